// The egress proxy of a `credproxy run` session: started on the host session, its
// Unix socket and trust files in the session directory (bound read-only inside),
// and the environment the sandbox gets (proxy, CA trust, placeholders, base URLs).
// Design: dev-docs/egress.md "credproxy run --egress".
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readFile, unlink, writeFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { rootCertificates } from 'node:tls'
import { UsageError } from '../errors.js'
import { EGRESS_FILE_NAME, egressAuditSink, hostEgressCredentials, loadEgressRules, startEgressProxy, type EgressProxy, type EgressRule } from '../egress/index.js'
import { nodeProxyOptions } from '../sandbox/egress-bridge.js'
import type { HostSession } from './host-session.js'
import { KUBE_PREFIX, kubeEgressFor, kubeRuleName } from './kube-egress.js'

/** The grant name of an --egress value: `kube:CONTEXT` is granted as rule kube-CONTEXT. */
export function egressGrantName(name: string): string {
  return name.startsWith(KUBE_PREFIX) ? kubeRuleName(name.slice(KUBE_PREFIX.length)) : name
}

/** The port the in-sandbox forwarder listens on (a private network namespace: always free). */
export const SANDBOX_EGRESS_PORT = 3128
/** File names in the session directory (inside: /run/credproxy/<name>). */
export const EGRESS_SOCKET_NAME = 'egress.sock'
export const EGRESS_CA_NAME = 'egress-ca.pem'
export const EGRESS_BUNDLE_NAME = 'egress-ca-bundle.pem'
/** Where Debian, Ubuntu and Alpine keep the system roots; Node's own roots otherwise. */
export const SYSTEM_CA_BUNDLES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt', '/etc/ssl/cert.pem'] as const
/** Variables that take a bundle replacing the system roots (so: system roots + session CA). */
export const CA_BUNDLE_VARS = ['SSL_CERT_FILE', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE', 'GIT_SSL_CAINFO', 'PIP_CERT', 'AWS_CA_BUNDLE', 'DENO_CERT'] as const

export interface SessionEgressOptions {
  session: HostSession
  /** Rule names granted at start; `kube:CONTEXT` makes a rule from the host kubeconfig (kube-egress.ts). */
  rules: readonly string[]
  /**
   * true: a loopback TCP listener with a proxy token on the host (sandbox shares the
   * host network, or no sandbox); false: only the Unix socket, reached through the forwarder.
   */
  tcp: boolean
  /** Admits only processes of this session's sandbox on the Unix socket. */
  peerCheck?: (socket: import('node:net').Socket) => { ok: boolean; reason?: string }
  /** Where the sandbox sees the session directory (bwrap: /run/credproxy; --sandbox none: the host path). */
  insideDir: string
  /** Rules besides presets and egress.json (the demo's throwaway rule); they come first. */
  extraRules?: readonly EgressRule[]
  /** The host environment (kubectl reads the user's kubeconfig with it). */
  hostEnv?: NodeJS.ProcessEnv
  /** Live grant set (the proxy reads it per request); default: the start rules, fixed. */
  grantedRules?: () => ReadonlySet<string>
}

export interface SessionEgress {
  proxy: EgressProxy
  rules: EgressRule[]
  /** The Unix socket's file name in the session directory. */
  socketName: string
  /** Everything the sandbox's environment gains. */
  env: Record<string, string>
  close(): Promise<void>
}

/** Refuses unknown rule names with the list of known ones. */
export function checkRuleNames(rules: readonly EgressRule[], names: readonly string[], configDir: string): void {
  const unknown = names.filter((name) => !rules.some((rule) => rule.name === name))
  if (unknown.length > 0) {
    throw new UsageError(
      `no egress rule named ${unknown.join(', ')}`,
      `Known rules: ${rules.map((rule) => rule.name).join(', ')} (presets and ${join(configDir, EGRESS_FILE_NAME)}); list them with credproxy egress rules.`,
    )
  }
}

async function systemRoots(): Promise<string> {
  for (const file of SYSTEM_CA_BUNDLES) {
    if (existsSync(file)) return readFile(file, 'utf8')
  }
  return rootCertificates.join('\n')
}

/** The proxy environment for a proxy URL: both cases, loopback exempt. */
export function proxyEnv(proxyUrl: string): Record<string, string> {
  const noProxy = 'localhost,127.0.0.1'
  return { HTTP_PROXY: proxyUrl, HTTPS_PROXY: proxyUrl, http_proxy: proxyUrl, https_proxy: proxyUrl, NO_PROXY: noProxy, no_proxy: noProxy }
}

/** Placeholder and base-URL variables of the granted rules (first rule wins a name). */
export function ruleEnv(rules: readonly EgressRule[], granted: readonly string[], placeholders: ReadonlyMap<string, string>, routeBase: string): Record<string, string> {
  const env: Record<string, string> = {}
  for (const name of granted) {
    const rule = rules.find((r) => r.name === name)
    const placeholder = placeholders.get(name)
    if (rule === undefined || placeholder === undefined) continue
    for (const variable of rule.env ?? []) env[variable] ??= placeholder
    if (rule.baseUrlEnv !== undefined && rule.route !== undefined) env[rule.baseUrlEnv] ??= `${routeBase}${rule.route}`
  }
  return env
}

export async function startSessionEgress(options: SessionEgressOptions): Promise<SessionEgress> {
  const { session } = options
  const rules = [...(options.extraRules ?? []), ...(await loadEgressRules(session.paths.configDir))]
  const dir = dirname(session.socketPath)
  const kubes = []
  for (const name of options.rules.filter((n) => n.startsWith(KUBE_PREFIX))) {
    const kube = await kubeEgressFor(name.slice(KUBE_PREFIX.length), options.hostEnv ?? process.env, dir)
    // First in the list: a kube rule pins its own server and wins over any rule on that host.
    rules.unshift(kube.rule)
    kubes.push(kube)
  }
  const granted = options.rules.map(egressGrantName)
  checkRuleNames(rules, granted, session.paths.configDir)
  const fixed: ReadonlySet<string> = new Set(granted)
  const secrets = new Map(kubes.flatMap((kube) => [...kube.secrets]))
  const credentials = hostEgressCredentials(session.credentials)
  const proxyToken = options.tcp ? randomBytes(24).toString('hex') : undefined
  const proxy = await startEgressProxy({
    session: session.sessionId,
    rules,
    grantedRules: options.grantedRules ?? (() => fixed),
    credentials: secrets.size === 0 ? credentials : { ...credentials, apiKey: (name) => (secrets.has(name) ? Promise.resolve(secrets.get(name) ?? null) : credentials.apiKey(name)) },
    audit: egressAuditSink(session.audit),
    socketPath: join(dir, EGRESS_SOCKET_NAME),
    ...(options.peerCheck === undefined ? {} : { peerCheck: options.peerCheck }),
    ...(proxyToken === undefined ? {} : { tcp: { host: '127.0.0.1' as const, port: 0 }, proxyToken }),
  })
  const files = [join(dir, EGRESS_CA_NAME), join(dir, EGRESS_BUNDLE_NAME), ...kubes.map((kube) => kube.rule.ca).filter((ca) => ca !== undefined)]
  const close = async (): Promise<void> => {
    await proxy.close()
    for (const file of files) await unlink(file).catch(() => undefined)
  }
  try {
    // Public certificates only: readable inside (the session directory is bound read-only).
    await writeFile(files[0] as string, proxy.caCertPem, { mode: 0o644 })
    await writeFile(files[1] as string, `${(await systemRoots()).trimEnd()}\n${proxy.caCertPem}`, { mode: 0o644 })
  } catch (error) {
    await close()
    throw error
  }
  const proxyUrl =
    proxy.tcpAddress === null || proxyToken === undefined
      ? `http://127.0.0.1:${SANDBOX_EGRESS_PORT}`
      : `http://credproxy:${proxyToken}@127.0.0.1:${proxy.tcpAddress.port}`
  const routeBase = proxy.tcpAddress === null ? `http://127.0.0.1:${SANDBOX_EGRESS_PORT}` : `http://127.0.0.1:${proxy.tcpAddress.port}`
  const { insideDir } = options
  const kubeconfigs: string[] = []
  for (const kube of kubes) {
    const file = await kube.writeInsideConfig(dir, routeBase, proxy.placeholders.get(kube.rule.name))
    files.push(file)
    kubeconfigs.push(join(insideDir, basename(file)))
  }
  const env: Record<string, string> = {
    ...(kubeconfigs.length === 0 ? {} : { KUBECONFIG: kubeconfigs.join(':') }),
    ...proxyEnv(proxyUrl),
    NODE_EXTRA_CA_CERTS: join(insideDir, EGRESS_CA_NAME),
    // Node 20's fetch and https ignore HTTPS_PROXY: the preload routes them through it.
    NODE_OPTIONS: nodeProxyOptions(),
    ...Object.fromEntries(CA_BUNDLE_VARS.map((name) => [name, join(insideDir, EGRESS_BUNDLE_NAME)])),
    ...ruleEnv(rules, granted, proxy.placeholders, routeBase),
  }
  return { proxy, rules, socketName: EGRESS_SOCKET_NAME, env, close }
}
