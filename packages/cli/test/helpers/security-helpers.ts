// Shared by the security room's tests (peer-credentials, audit, control, security-*):
// in-process CLI streams, and a session built from the real parts.
import { PassThrough } from 'node:stream'
import type { CliIO } from '../../src/cli-io.js'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ProxySocketClient } from '@credproxy/core'
import type { HostOAuth } from '../../src/credentials/host-oauth.js'
import { resolvePaths, type CredproxyPaths } from '../../src/paths.js'
import { auditLogPath, type AuditLine } from '../../src/audit/audit-format.js'
import { readAuditEntries } from '../../src/audit/audit-reader.js'
import { AuditLog } from '../../src/audit/audit-writer.js'
import { startControlChannel, type ControlChannel } from '../../src/control/control-channel.js'
import { CredentialProxyServer } from '../../src/broker/credential-proxy-server.js'
import type { GrantSet } from '../../src/broker/grants.js'
import type { ServerLimits } from '../../src/broker/limits.js'
import { createPeerCheck } from '../../src/broker/peer-credentials.js'
import { openHostStores } from '../../src/storage/index.js'
import type { HostStores } from '../../src/storage/types.js'
import { RawClient } from './server-raw-client.js'

export interface CapturedIO extends CliIO {
  stdoutText(): string
  stderrText(): string
}

/** CliIO with in-memory streams; env is exactly what the test passes (plus CREDPROXY_KEYRING=off). */
export function captureIO(env: NodeJS.ProcessEnv, cwd: string = process.cwd()): CapturedIO {
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  const out: Buffer[] = []
  const err: Buffer[] = []
  stdout.on('data', (chunk: Buffer) => out.push(chunk))
  stderr.on('data', (chunk: Buffer) => err.push(chunk))
  return {
    stdin: new PassThrough(),
    stdout,
    stderr,
    env: { CREDPROXY_KEYRING: 'off', ...env },
    cwd,
    stdoutText: () => Buffer.concat(out).toString('utf8'),
    stderrText: () => Buffer.concat(err).toString('utf8'),
  }
}

/** Events the lines stand for: a summary line (audit-budget.ts) counts `count` of them. */
export function auditCount(lines: readonly AuditLine[], match: (line: AuditLine) => boolean): number {
  return lines.filter(match).reduce((sum, line) => sum + (line.count ?? 1), 0)
}

// ---- A session built from the real parts, as `credproxy run` would build it ----------

export interface SecureSession {
  home: string
  env: NodeJS.ProcessEnv
  paths: CredproxyPaths
  stores: HostStores
  server: CredentialProxyServer
  socketPath: string
  sessionId: string
  secret: Buffer
  audit: AuditLog
  control: ControlChannel
  logs: string[]
  /** A v3 client holding the session secret (the sandbox side). */
  client(): ProxySocketClient
  /** A raw client that completed the v3 handshake. */
  rawClient(): Promise<RawClient>
  /** Every audit line written so far (writes the budget's summaries and flushes first). */
  auditLines(): Promise<AuditLine[]>
  /** The audit file's raw text (flushes first). */
  auditText(): Promise<string>
  cleanup(): Promise<void>
}

export interface SecureSessionOptions {
  grants?: GrantSet
  limits?: Partial<ServerLimits>
  allowedUids?: number[]
  /** Pids of the "launched sandboxes": every peer must live in one of them (as under `credproxy run`). */
  sandboxPids?: number[]
  oauth?: (stores: HostStores, paths: CredproxyPaths) => Promise<HostOAuth>
  /** Set before the stores open (e.g. a providers.json). */
  prepare?: (paths: CredproxyPaths) => Promise<void>
}

export async function startSecureSession(options: SecureSessionOptions = {}): Promise<SecureSession> {
  const home = await mkdtemp(join(tmpdir(), 'cp-sec-'))
  const env: NodeJS.ProcessEnv = { CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' }
  const paths = resolvePaths(env)
  await options.prepare?.(paths)
  const logs: string[] = []
  const log = (line: string): void => void logs.push(line)
  const stores = await openHostStores({ env, paths, log })
  const oauth = options.oauth ? await options.oauth(stores, paths) : undefined
  const audit = await AuditLog.open(auditLogPath(paths), { log })
  const server = new CredentialProxyServer({
    stores,
    ...(oauth ? { oauth: oauth.logins, credentials: oauth.credentials } : {}),
    runtimeDir: paths.runtimeDir,
    grants: options.grants ?? { providers: [], keys: [], capabilities: [] },
    peerCheck: createPeerCheck({
      ...(options.allowedUids ? { allowedUids: options.allowedUids } : {}),
      ...(options.sandboxPids ? { sandboxPids: () => options.sandboxPids ?? [] } : {}),
      log,
    }),
    audit,
    log,
    ...(options.limits ? { limits: options.limits } : {}),
  })
  const started = await server.start()
  const control = await startControlChannel(
    { sessionId: started.sessionId, grants: server.grants, socketPath: started.socketPath, peers: () => server.peers() },
    paths,
    { command: ['sandboxed-agent'], audit, log },
  )
  const clients: ProxySocketClient[] = []
  const raws: RawClient[] = []
  return {
    home,
    env,
    paths,
    stores,
    server,
    socketPath: started.socketPath,
    sessionId: started.sessionId,
    secret: started.secret,
    audit,
    control,
    logs,
    client() {
      const client = new ProxySocketClient({ socketPath: started.socketPath, secret: started.secret, connectAttempts: 1 })
      clients.push(client)
      return client
    },
    async rawClient() {
      const raw = await RawClient.connect(started.socketPath)
      raws.push(raw)
      const finish = await raw.handshakeV3(started.secret, { minVersion: 3, maxVersion: 3 })
      if (finish['ok'] !== true) throw new Error(`handshake failed: ${JSON.stringify(finish)}`)
      return raw
    },
    async auditLines() {
      server.flushAudit()
      await audit.flush()
      const lines: AuditLine[] = []
      for await (const line of readAuditEntries(auditLogPath(paths))) lines.push(line)
      return lines
    },
    async auditText() {
      await audit.flush()
      return readFile(auditLogPath(paths), 'utf8')
    },
    async cleanup() {
      for (const client of clients) client.close()
      for (const raw of raws) raw.close()
      await control.stop()
      await server.stop()
      await oauth?.close()
      await audit.close()
      await rm(home, { recursive: true, force: true })
    },
  }
}
