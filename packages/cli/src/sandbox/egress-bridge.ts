// The bridge from a network-less sandbox to the session's egress proxy: a forwarder
// inside listening on 127.0.0.1:PORT that pipes each connection to the proxy's Unix
// socket (bound read-only with the session directory). A small shell init starts it,
// waits until it listens, then execs the user's command; bwrap's pid namespace takes
// the forwarder down with the command (and --die-with-parent with credproxy).
// Why socat first: dev-docs/egress.md "The bridge" (start-up and RSS measured).
import { spawnSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { credproxyBinPath, nodeBinary } from './shim.js'

export type ForwarderKind = 'socat' | 'node'

export interface EgressBridge {
  /** Socket file name in the session directory (inside: SANDBOX_SOCKET_DIR/<name>). */
  socketName: string
  /** Port the forwarder listens on inside. */
  port: number
  /** Variables the sandbox gains (proxy, trust, placeholders). */
  env: Record<string, string>
  forwarder: ForwarderKind
}

/** How many times the init checks for the forwarder's listening socket before giving up (~1 ms each). */
export const FORWARDER_READY_CHECKS = 5_000
/** The init's exit code when the forwarder never listened (like env's "could not run"). */
export const FORWARDER_FAILED_EXIT = 125

let socatFound: boolean | undefined

/** socat when installed (4.6 MiB, ~14 ms to listen), else our Node forwarder (~45 MiB, ~250 ms). */
export function pickForwarder(env: NodeJS.ProcessEnv = process.env): ForwarderKind {
  const forced = env['CREDPROXY_EGRESS_FORWARDER']
  if (forced === 'socat' || forced === 'node') return forced
  socatFound ??= spawnSync('socat', ['-V'], { stdio: 'ignore', timeout: 2_000 }).status === 0
  return socatFound ? 'socat' : 'node'
}

/** The Node forwarder and preload shipped with the package (sandbox-assets/). */
export function sandboxAsset(name: string): string {
  return join(dirname(dirname(credproxyBinPath())), 'sandbox-assets', name)
}

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`
}

/** /proc/net/tcp's form of a listening 127.0.0.1:port ("0100007F:0C38 00000000:0000 0A"). */
export function listeningPattern(port: number): string {
  return `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')} 00000000:0000 0A`
}

/**
 * argv that starts the forwarder, waits for it to listen, then execs command. The
 * forwarder ignores INT/TERM/HUP (Ctrl-C is the command's to handle); it dies when the
 * sandbox's pid namespace does.
 */
export function bridgeInitArgv(
  command: readonly string[],
  socketPath: string,
  bridge: Pick<EgressBridge, 'port' | 'forwarder'>,
  /** The node that runs the Node forwarder: the host's (bwrap binds it), or the image's `node` (containers). */
  node: string = nodeBinary(),
): string[] {
  const forwarder =
    bridge.forwarder === 'socat'
      ? `socat TCP-LISTEN:${bridge.port},bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:${shellQuote(socketPath)}`
      : `${shellQuote(node)} ${shellQuote(sandboxAsset('egress-forwarder.mjs'))} ${bridge.port} ${shellQuote(socketPath)}`
  const script = [
    `(trap '' INT TERM HUP TSTP; exec ${forwarder}) </dev/null >/dev/null 2>&1 &`,
    'i=0',
    `until grep -q '${listeningPattern(bridge.port)}' /proc/net/tcp; do`,
    '  i=$((i+1))',
    `  if [ "$i" -gt ${FORWARDER_READY_CHECKS} ]; then echo "credproxy: the egress forwarder (${bridge.forwarder}) did not start inside the sandbox" >&2; exit ${FORWARDER_FAILED_EXIT}; fi`,
    'done',
    'exec "$@"',
  ].join('\n')
  return ['/bin/sh', '-c', script, 'credproxy-egress-init', ...command]
}

/** NODE_OPTIONS that load the proxy preload (kept after any the user's allowlist carried). */
export function nodeProxyOptions(): string {
  const preload = sandboxAsset('node-proxy-preload.mjs')
  return `--import ${/[\s"\\]/.test(preload) ? JSON.stringify(preload) : preload}`
}
