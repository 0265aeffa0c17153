// `credproxy run`: one broker session around one sandboxed command. Starts the
// server with the session's grants, launches the sandbox, streams stdio, forwards
// signals, exits with the command's code, and tears everything down on every path.
import { basename, dirname } from 'node:path'
import { KeyName } from '@credproxy/core'
import { writeLine, type CliIO, type Command } from '../cli-io.js'
import { ensurePrivateDir } from '../fs-private.js'
import { resolvePaths } from '../paths.js'
import { parseProviderGrant, type Capability, type GrantSet, type ProviderGrant } from '../broker/grants.js'
import type { AuditEntry, AuditSink } from '../broker/hooks.js'
import type { HostStores } from '../storage/index.js'
import { NO_SANDBOX_PID, spawnSandbox, type SandboxProcess } from '../sandbox/launch.js'
import { createPeerCheck } from '../broker/peer-credentials.js'
import type { EgressRule } from '../egress/index.js'
import { pickForwarder } from '../sandbox/egress-bridge.js'
import { SANDBOX_SOCKET_DIR, type SandboxName } from '../sandbox/types.js'
// Loaded only with --egress: the proxy and its CA code (x509) cost start-up time every other run.
import type { SessionEgress } from '../session/session-egress.js'
import { startHostSession, type HostSession } from '../session/host-session.js'
import { reapOrphanedNamespaceInits, setChildSubreaper } from '../sandbox/reaper.js'
import { parseSandboxChoice, prepareLaunch, selectSandbox, type PreparedLaunch } from '../sandbox/select.js'
import { parseOptions, splitAtDashDash } from './parse-options.js'
import { escapeUntrusted, logLineTo } from '../escape.js'
import { UsageError } from '../errors.js'

/** Signals credproxy run forwards to the sandbox (the command decides what they mean). */
export const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGWINCH'] as const
/** Capabilities a session gets unless --allow-save: read credentials and log in; no overwrites from inside. */
export const DEFAULT_CAPABILITIES: readonly Capability[] = ['read', 'login']

const help = `Usage: credproxy run [options] -- COMMAND [ARGS...]

Run COMMAND in a sandbox with a credential broker for exactly what you grant.
Inside, \`credproxy key get\`, \`credproxy token\`, \`credproxy auth login\` and
the library factories reach the host through one socket; no refresh token,
keyring or key file is ever inside.

Options:
  --sandbox NAME        auto (default), bwrap, docker, podman or none (no isolation)
  --grant P[:BUCKET]    grant OAuth provider P (all buckets, or only BUCKET); repeatable
  --grant-key NAME      grant the API key NAME; repeatable
  --grant-all           grant every provider and every API key (as serve --grant-all)
  --allow-save          let the sandbox save and remove tokens (default: read and login only)
  --egress RULE         start the egress proxy with RULE granted (a preset such as github or
                        anthropic, or one from egress.json): inside, HTTPS_PROXY, the CA
                        trust variables and placeholder variables (e.g. GH_TOKEN) are set;
                        the real secret is injected on the host; repeatable
  --allow-network       keep network access (default: none; bwrap then shares the host
                        network namespace, abstract Unix sockets included)
  --legacy-clients      also serve protocol v1/v2 clients (llxprt-code's inner client); they
                        carry no proof, so only the peer check (inside this sandbox) admits them;
                        sets LLXPRT_CREDENTIAL_SOCKET and LLXPRT_CAPABILITY_FD inside
  --bind PATH           also bind PATH read-write at the same path; repeatable
  --image IMAGE         container image for docker/podman (default node:20-bookworm-slim)
  --verbose             broker log lines on stderr

The command's exit code is credproxy's (128+N when it was killed by signal N).
Every request is written to the audit log (\`credproxy audit\`).

Examples:
  credproxy run --grant-key OPENAI_API_KEY -- credproxy key get OPENAI_API_KEY
  credproxy run --grant anthropic -- my-agent --model opus
  credproxy run --egress anthropic --egress github -- my-agent
  credproxy run --grant gemini:work --grant-key GITHUB_TOKEN --allow-network -- npm test
  credproxy run --sandbox none --grant-key K -- ./script.sh`

export interface RunOptions {
  sandbox: string | undefined
  grants: GrantSet
  allowNetwork: boolean
  legacyClients: boolean
  binds: string[]
  /** Egress rules granted to the session's egress proxy (none: no proxy). */
  egressRules?: string[]
  /** Rules besides presets and egress.json (the demo's throwaway upstream); no flag sets them. */
  extraEgressRules?: EgressRule[]
  image: string | undefined
  verbose: boolean
  command: string[]
}

const RUN_OPTIONS = {
  sandbox: { type: 'string' },
  grant: { type: 'string', multiple: true },
  'grant-key': { type: 'string', multiple: true },
  'allow-save': { type: 'boolean' },
  'allow-network': { type: 'boolean' },
  'legacy-clients': { type: 'boolean' },
  'grant-all': { type: 'boolean' },
  bind: { type: 'string', multiple: true },
  egress: { type: 'string', multiple: true },
  image: { type: 'string' },
  verbose: { type: 'boolean' },
} as const

export function parseRunArgs(args: readonly string[]): RunOptions {
  const examples = { missingDashDash: 'Example: credproxy run --grant-key K -- credproxy key get K', emptyCommand: 'Example: credproxy run -- my-agent' }
  const { flags, command } = splitAtDashDash(args, examples, { command: 'run', options: RUN_OPTIONS })
  const values = parseOptions('run', flags, RUN_OPTIONS)
  const providers: ProviderGrant[] = (values.grant ?? []).map((text) => {
    try {
      return parseProviderGrant(text)
    } catch {
      throw new UsageError(`invalid --grant '${text}'`, 'Use --grant PROVIDER or --grant PROVIDER:BUCKET (letters, digits, . _ @ -).')
    }
  })
  const keys = (values['grant-key'] ?? []).map((name) => {
    if (!KeyName.safeParse(name).success) {
      throw new UsageError(`invalid --grant-key '${name}'`, 'Key names are 1-64 characters of letters, digits, . _ -.')
    }
    return name
  })
  if (values['grant-all'] === true) {
    providers.push({ provider: '*' })
    keys.push('*')
  }
  const capabilities: Capability[] = [...DEFAULT_CAPABILITIES]
  if (values['allow-save'] === true) capabilities.push('save')
  return {
    sandbox: values.sandbox,
    grants: { providers, keys, capabilities },
    allowNetwork: values['allow-network'] === true,
    legacyClients: values['legacy-clients'] === true,
    binds: values.bind ?? [],
    egressRules: values.egress ?? [],
    image: values.image,
    verbose: values.verbose === true,
    command,
  }
}

/** What a refused request needed: the flag to rerun with and the `credproxy grant` options that add it now. */
export function grantHint(entry: AuditEntry): { what: string; flag: string; grant: string } | null {
  if (entry.event !== 'request' || entry.outcome !== 'NOT_GRANTED') return null
  if (entry.op === 'get_api_key' || entry.op === 'has_api_key') {
    return entry.key === undefined ? null : { what: `key ${entry.key}`, flag: `--grant-key ${entry.key}`, grant: `--key ${entry.key}` }
  }
  if (entry.op === 'save_token' || entry.op === 'remove_token') return { what: entry.op, flag: '--allow-save', grant: '--capability save' }
  if (entry.provider !== undefined) {
    const target = entry.bucket === undefined || entry.bucket === 'default' ? entry.provider : `${entry.provider}:${entry.bucket}`
    return { what: `provider ${target}`, flag: `--grant ${target}`, grant: `--provider ${target}` }
  }
  return null
}

/**
 * Tees audit entries to the log and tells the user, once each, what a refused request
 * needed. Not when the sandbox writes to this same stderr: the refused command's own
 * error line (which carries the same pasteable command) is then the one line the user sees.
 */
function hintingAudit(log: AuditSink, io: CliIO, sessionId: () => string): AuditSink {
  const shown = new Set<string>()
  const sharedStderr = (io.stderr as { fd?: unknown }).fd === 2
  return {
    write(entry) {
      log.write(entry)
      if (sharedStderr) return
      const hint = grantHint(entry)
      if (hint === null || shown.has(hint.what)) return
      shown.add(hint.what)
      // The whole command, ready to paste into another terminal while the session runs.
      writeLine(
        io.stderr,
        `credproxy: the sandbox was refused ${hint.what}: rerun with ${hint.flag}, or grant it now: credproxy grant --session ${sessionId()} ${hint.grant}`,
      )
    },
  }
}

/** A granted key that is not stored would only fail later, inside the sandbox: say so now (as `grant` does). */
async function noteMissingKeys(keys: readonly string[], credentials: { listApiKeys(): Promise<string[]> }, io: CliIO): Promise<void> {
  const named = keys.filter((key) => key !== '*')
  if (named.length === 0) return
  const stored = await credentials.listApiKeys().catch(() => null)
  if (stored === null) return
  for (const key of named.filter((k) => !stored.includes(k))) {
    writeLine(io.stderr, `credproxy: note: no API key named ${key} is stored on the host yet; the sandbox gets it once you run: credproxy key set ${key}`)
  }
}

export interface StartedSession {
  sessionId: string
  socketPath: string
  secret: Buffer
}

export async function runCommand(
  options: RunOptions,
  io: CliIO,
  /** Called once the broker listens (the demo uses it to know which secret to look for). */
  onStarted?: (session: StartedSession) => void,
  /** Host stores the caller already opened (and closes); otherwise run opens and closes its own. */
  openedStores?: HostStores,
): Promise<number> {
  const choice = parseSandboxChoice(options.sandbox)
  // bwrap (the probe too) leaves its namespace init to the nearest subreaper: us, so we reap it (sandbox/reaper.ts).
  const subreaper = choice !== 'none' && setChildSubreaper(true)
  try {
    return await runSession(choice, options, io, onStarted, openedStores)
  } finally {
    if (subreaper) {
      await reapOrphanedNamespaceInits()
      setChildSubreaper(false)
    }
  }
}

async function runSession(
  choice: ReturnType<typeof parseSandboxChoice>,
  options: RunOptions,
  io: CliIO,
  onStarted?: (session: StartedSession) => void,
  openedStores?: HostStores,
): Promise<number> {
  const paths = resolvePaths(io.env)
  const brokerLog = (line: string): void => {
    if (options.verbose || io.env['CREDPROXY_DEBUG'] !== undefined) writeLine(io.stderr, `credproxy[broker]: ${escapeUntrusted(line)}`)
  }
  const backend = selectSandbox(choice, io.env, io.stderr)
  // They must exist before launch: bwrap hides them with a tmpfs only where they exist.
  for (const dir of [paths.dataDir, paths.stateDir, paths.configDir, paths.runtimeDir]) await ensurePrivateDir(dir)

  let session: HostSession | undefined
  const cleanups: Array<() => Promise<unknown>> = []
  let sandbox: SandboxProcess | undefined
  const handlers = new Map<NodeJS.Signals, () => void>()
  // The egress proxy's peer check admits only this sandbox's processes (none before launch).
  let sandboxPidsOf: (() => readonly number[]) | undefined
  try {
    session = await startHostSession({
      env: io.env,
      paths,
      grants: await withEgressGrants(options),
      command: options.command,
      log: brokerLog,
      storeLog: logLineTo(io.stderr),
      ...(openedStores === undefined ? {} : { stores: openedStores }),
      allowLegacyClients: options.legacyClients,
      sandboxed: true,
      wrapAudit: (log, sessionId) => hintingAudit(log, io, sessionId),
    })
    await noteMissingKeys(options.grants.keys, session.credentials, io)
    if (options.legacyClients) {
      writeLine(io.stderr, 'credproxy: --legacy-clients: protocol v1/v2 clients are admitted by the peer check alone (any process in this sandbox)')
    }
    onStarted?.({ sessionId: session.sessionId, socketPath: session.socketPath, secret: session.secret })
    const egress = await startRunEgress(options, backend, session, io.env, () => sandboxPidsOf?.() ?? [NO_SANDBOX_PID])
    if (egress !== undefined) cleanups.push(() => egress.close())

    const tty = io.stdin.isTTY === true && io.stdout.isTTY === true
    const prepared: PreparedLaunch = await prepareLaunch(
      backend,
      {
        command: options.command,
        cwd: io.cwd,
        hostEnv: io.env,
        socketDir: dirname(session.socketPath),
        socketName: basename(session.socketPath),
        binds: options.binds,
        allowNetwork: options.allowNetwork,
        legacyClients: options.legacyClients,
        hiddenPaths: hiddenPaths(io.env, paths),
        ...(egress === undefined ? {} : { egress: { socketName: egress.socketName, port: egress.port, env: egress.env, forwarder: pickForwarder(io.env) } }),
        ...(options.image === undefined ? {} : { image: options.image }),
      },
      session.secret.toString('hex'),
      tty,
    )
    cleanups.push(() => prepared.cleanup())

    const running = spawnSandbox(prepared, io)
    sandbox = running
    session.attachSandbox(() => running.sandboxPids())
    sandboxPidsOf = () => running.sandboxPids()
    for (const signal of FORWARDED_SIGNALS) {
      // With --sandbox none on a terminal, Ctrl-C already reached the command (same process group).
      const skip = backend === 'none' && signal === 'SIGINT' && io.stdin.isTTY === true
      const handler = (): void => {
        if (!skip) running.forward(signal)
      }
      handlers.set(signal, handler)
      process.on(signal, handler)
    }
    if (backend !== 'none') {
      // Ctrl-Z stops credproxy's process group only; the sandbox runs in its own session and
      // would keep reading the terminal beside the host shell. Stop it with us, resume it with us.
      const stop = (): void => {
        running.forward('SIGSTOP')
        process.kill(process.pid, 'SIGSTOP')
      }
      const resume = (): void => running.forward('SIGCONT')
      for (const [signal, handler] of [['SIGTSTP', stop], ['SIGCONT', resume]] as const) {
        handlers.set(signal, handler)
        process.on(signal, handler)
      }
    }
    const exit = await running.exited
    return exit.code
  } finally {
    for (const [signal, handler] of handlers) process.off(signal, handler)
    // An exception in credproxy itself must not leave the sandbox running.
    if (sandbox !== undefined) await sandbox.terminate()
    for (const cleanup of cleanups.reverse()) {
      await cleanup().catch((error: unknown) => brokerLog(`cleanup failed: ${String(error)}`))
    }
    await session?.close()
  }
}

/** The start grants with the --egress rules in them (callers such as the demo set only egressRules). */
async function withEgressGrants(options: RunOptions): Promise<GrantSet> {
  if ((options.egressRules ?? []).length === 0) return options.grants
  const { egressGrantName } = await import('../session/session-egress.js')
  const rules = (options.egressRules ?? []).map(egressGrantName)
  return { ...options.grants, egress: [...new Set([...(options.grants.egress ?? []), ...rules])] }
}

/**
 * The session's egress proxy when --egress was given. Without a network the sandbox
 * reaches it through the forwarder and the Unix socket (peer-checked); with one (or no
 * sandbox) through a token-guarded loopback listener.
 */
async function startRunEgress(
  options: RunOptions,
  backend: SandboxName,
  session: HostSession,
  hostEnv: NodeJS.ProcessEnv,
  sandboxPids: () => readonly number[],
): Promise<(SessionEgress & { port: number }) | undefined> {
  const rules = options.egressRules ?? []
  if (rules.length === 0) return undefined
  // A container never reaches the host's loopback: it always gets the socket and the forwarder.
  const container = backend === 'docker' || backend === 'podman'
  const { SANDBOX_EGRESS_PORT, startSessionEgress } = await import('../session/session-egress.js')
  const egress = await startSessionEgress({
    session,
    rules,
    tcp: backend === 'none' || (options.allowNetwork && !container),
    hostEnv,
    ...(options.extraEgressRules === undefined ? {} : { extraRules: options.extraEgressRules }),
    insideDir: backend === 'none' ? dirname(session.socketPath) : SANDBOX_SOCKET_DIR,
    ...(backend === 'none' ? {} : { peerCheck: createPeerCheck({ sandboxPids }) }),
    // `credproxy grant|revoke --egress` change these while the session runs.
    grantedRules: () => session.grants.egressRules(),
  })
  return Object.assign(egress, { port: SANDBOX_EGRESS_PORT })
}

/** Everything of credproxy's own that a sandbox must not see. */
function hiddenPaths(env: NodeJS.ProcessEnv, paths: ReturnType<typeof resolvePaths>): string[] {
  const hidden = [paths.dataDir, paths.stateDir, paths.configDir, paths.runtimeDir]
  const home = env['CREDPROXY_HOME']
  if (home !== undefined && home !== '') hidden.push(home)
  return hidden
}

export const command: Command = {
  name: 'run',
  help,
  async run(args, io) {
    return runCommand(parseRunArgs(args), io)
  },
}
