// `credproxy serve`: a broker over the host stores for launchers credproxy does
// not control (e.g. llxprt-code's own sandbox). Prints one JSON line when ready,
// runs until SIGINT/SIGTERM, and removes its socket and directory on the way out.
import { randomBytes } from 'node:crypto'
import { readFile, stat, unlink, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { writeLine, type CliIO, type Command } from '../cli-io.js'
import { EXIT } from '../exit-codes.js'
import type { HostOAuth } from '../credentials/host-oauth.js'
import { resolvePaths, type CredproxyPaths } from '../paths.js'
import { parseProviderGrant, type Capability, type GrantSet } from '../broker/grants.js'
import type { HostStores } from '../storage/types.js'
import { startHostSession, type HostSession } from '../session/host-session.js'
import { logLineTo } from '../escape.js'
import { egressAuditSink, hostEgressCredentials, loadEgressRules, startEgressProxy } from '../egress/index.js'
import { CredproxyError, UsageError } from '../errors.js'
import { parseOptions } from './parse-options.js'

/** A legacy token longer than this is refused (the wire schema's limit). */
export const MAX_LEGACY_TOKEN_CHARS = 1024
export const SHUTDOWN_SIGNALS = ['SIGINT', 'SIGTERM'] as const

const help = `Usage: credproxy serve [options]

Run a credential broker on a Unix socket until SIGINT or SIGTERM, for sandbox
launchers that start their own sandbox. Prints one JSON line on stdout when
ready: {"socket":"...","pid":N,"session":"..."}. Nothing is granted unless
you grant it.

Options:
  --socket PATH             listen on PATH (default: a new 0700 directory per session)
  --secret-file PATH        write the 64-hex session secret to a NEW 0600 file (v3 clients
                            prove it; it never crosses the socket); removed on exit
  --legacy-token-file PATH  also serve protocol v1/v2 clients presenting the token in PATH
  --grant P[:BUCKET]        grant OAuth provider P (all buckets, or only BUCKET); repeatable
  --grant-key NAME          grant the API key NAME; repeatable
  --grant-all               grant every provider and every API key
  --allow-save              let clients save and remove tokens (default: read and login only)
  --egress RULE             start the egress proxy and grant it egress rule RULE (a preset or
                            one from egress.json); repeatable. The ready line then carries
                            "egress": {socket, caFile, placeholders[, proxyUrl]}
  --egress-port PORT        also listen for the egress proxy on 127.0.0.1:PORT (0: any free
                            port), behind a per-session proxy token
  --verbose                 broker log lines on stderr

Grants can change while it runs: credproxy grant --session ID ...

Examples:
  credproxy serve --grant anthropic --grant-key OPENAI_API_KEY --secret-file /run/user/1000/cp.secret
  credproxy serve --socket /tmp/cp.sock --legacy-token-file ~/.config/llxprt/proxy.token --grant-all
  credproxy serve --egress github --egress anthropic --egress-port 0`

export interface ServeOptions {
  socket: string | undefined
  secretFile: string | undefined
  legacyTokenFile: string | undefined
  grants: GrantSet
  /** Egress rules granted to the egress proxy (none: no egress proxy). */
  egressRules: string[]
  egressPort: number | undefined
  verbose: boolean
}

export function parseServeArgs(args: readonly string[]): ServeOptions {
  const values = parseOptions('serve', args, {
    socket: { type: 'string' },
    'secret-file': { type: 'string' },
    'legacy-token-file': { type: 'string' },
    grant: { type: 'string', multiple: true },
    'grant-key': { type: 'string', multiple: true },
    'grant-all': { type: 'boolean' },
    'allow-save': { type: 'boolean' },
    egress: { type: 'string', multiple: true },
    'egress-port': { type: 'string' },
    verbose: { type: 'boolean' },
  })
  const capabilities: Capability[] = values['allow-save'] === true ? ['read', 'login', 'save'] : ['read', 'login']
  const grants: GrantSet = { providers: [], keys: [], capabilities }
  try {
    for (const g of values.grant ?? []) grants.providers.push(parseProviderGrant(g))
  } catch {
    throw new UsageError('--grant takes PROVIDER or PROVIDER:BUCKET (letters, digits, . _ @ -)', 'Example: --grant anthropic:work')
  }
  grants.keys.push(...(values['grant-key'] ?? []))
  if (values['grant-all'] === true) {
    grants.providers.push({ provider: '*' })
    grants.keys.push('*')
  }
  const egressPortText = values['egress-port']
  const egressPort = egressPortText === undefined ? undefined : Number(egressPortText)
  if (egressPort !== undefined && (!/^\d{1,5}$/.test(egressPortText ?? '') || egressPort > 65_535)) {
    throw new UsageError('--egress-port takes a port number 0-65535 (0: any free port)', 'Example: --egress-port 0')
  }
  const egressRules = values.egress ?? []
  if (egressPort !== undefined && egressRules.length === 0) {
    throw new UsageError('--egress-port needs at least one --egress RULE', 'Example: --egress github --egress-port 0')
  }
  return {
    socket: values.socket,
    secretFile: values['secret-file'],
    legacyTokenFile: values['legacy-token-file'],
    grants,
    egressRules,
    egressPort,
    verbose: values.verbose === true,
  }
}

async function readLegacyToken(path: string, io: CliIO): Promise<string> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    throw new CredproxyError('FAILED', `cannot read legacy token file ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`, { hint: 'Pass --legacy-token-file a file you can read.' })
  }
  const token = text.trim()
  if (token.length === 0 || token.length > MAX_LEGACY_TOKEN_CHARS || /\s/.test(token)) {
    throw new UsageError(`${path} must hold one token of 1 to ${MAX_LEGACY_TOKEN_CHARS} characters without spaces`)
  }
  if (((await stat(path)).mode & 0o077) !== 0) {
    writeLine(io.stderr, `credproxy: warning: ${path} is readable by other users; chmod 600 it`)
  }
  return token
}

export interface ServeDeps {
  /** Resolves when the broker should stop (default: the first SIGINT or SIGTERM). */
  waitForShutdown?: () => Promise<unknown>
  openStores?: (io: CliIO, paths: CredproxyPaths, log: (line: string) => void) => Promise<HostStores>
  /** null: no OAuth configuration (logins answer PROVIDER_NOT_CONFIGURED). */
  createOAuth?: (stores: HostStores, io: CliIO, paths: CredproxyPaths, log: (line: string) => void) => Promise<HostOAuth | null>
}

export function waitForSignal(signals: readonly NodeJS.Signals[] = SHUTDOWN_SIGNALS): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const handler = (signal: NodeJS.Signals): void => {
      for (const s of signals) process.off(s, handler)
      resolve(signal)
    }
    for (const s of signals) process.on(s, handler)
  })
}

export function createServeCommand(deps: ServeDeps = {}): Command {
  return {
    name: 'serve',
    help,
    async run(args: string[], io: CliIO): Promise<number> {
      const options = parseServeArgs(args)
      const paths = resolvePaths(io.env)
      const log = options.verbose ? logLineTo(io.stderr) : () => undefined
      const legacyToken = options.legacyTokenFile === undefined ? undefined : await readLegacyToken(options.legacyTokenFile, io)
      // Listen before the first signal can arrive after "ready", and never miss it.
      const shutdown = (deps.waitForShutdown ?? (() => waitForSignal()))()
      let session: HostSession | undefined
      // The egress proxy stands on the session: closed before it, in reverse order.
      const egressCleanups: Array<() => Promise<unknown>> = []
      try {
        const { openStores, createOAuth } = deps
        session = await startHostSession({
          env: io.env,
          paths,
          grants: options.grants,
          command: ['credproxy-serve'],
          log,
          storeLog: logLineTo(io.stderr),
          onCleanupError: (error) => writeLine(io.stderr, `credproxy: cleanup failed: ${(error as Error).message}`),
          ...(openStores === undefined ? {} : { openStores: (p, l) => openStores(io, p, l) }),
          ...(createOAuth === undefined ? {} : { createOAuth: (s, p, l) => createOAuth(s, io, p, l) }),
          ...(options.socket === undefined ? {} : { socketPath: options.socket }),
          ...(legacyToken === undefined ? {} : { allowLegacyClients: true, legacyToken }),
          ...(options.secretFile === undefined ? {} : { secretFile: options.secretFile }),
          sandboxed: false,
        })
        let egress: Record<string, unknown> | undefined
        if (options.egressRules.length > 0) {
          const rules = await loadEgressRules(paths.configDir)
          const unknown = options.egressRules.filter((name) => !rules.some((rule) => rule.name === name))
          if (unknown.length > 0) {
            throw new UsageError(`no egress rule named ${unknown.join(', ')}`, `Known rules: ${rules.map((rule) => rule.name).join(', ')} (presets and ${join(paths.configDir, 'egress.json')}).`)
          }
          // Beside the broker socket: in its own 0700 session directory, or next to a --socket path.
          const egressSocket = options.socket === undefined ? join(dirname(session.socketPath), 'egress.sock') : `${options.socket}.egress`
          const proxyToken = options.egressPort === undefined ? undefined : randomBytes(24).toString('hex')
          const granted: ReadonlySet<string> = new Set(options.egressRules)
          const proxy = await startEgressProxy({
            session: session.sessionId,
            rules,
            grantedRules: () => granted,
            credentials: hostEgressCredentials(session.credentials),
            audit: egressAuditSink(session.audit),
            socketPath: egressSocket,
            ...(options.egressPort === undefined || proxyToken === undefined ? {} : { tcp: { host: '127.0.0.1' as const, port: options.egressPort }, proxyToken }),
          })
          egressCleanups.push(() => proxy.close())
          const caFile = `${egressSocket}.ca.pem`
          await writeFile(caFile, proxy.caCertPem, { mode: 0o644 })
          egressCleanups.push(() => unlink(caFile).catch(() => undefined))
          egress = {
            socket: egressSocket,
            caFile,
            placeholders: Object.fromEntries([...proxy.placeholders].filter(([name]) => granted.has(name))),
            ...(proxy.tcpAddress === null || proxyToken === undefined ? {} : { proxyUrl: `http://credproxy:${proxyToken}@127.0.0.1:${proxy.tcpAddress.port}` }),
          }
        }
        writeLine(io.stdout, JSON.stringify({ socket: session.socketPath, pid: process.pid, session: session.sessionId, ...(egress === undefined ? {} : { egress }) }))
        await shutdown
        return EXIT.OK
      } finally {
        for (const cleanup of egressCleanups.reverse()) {
          await cleanup().catch((error: unknown) => writeLine(io.stderr, `credproxy: cleanup failed: ${(error as Error).message}`))
        }
        await session?.close()
      }
    },
  }
}

export const command = createServeCommand()
