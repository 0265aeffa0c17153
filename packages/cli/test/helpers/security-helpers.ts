// Shared by the security room's tests (peer-credentials, audit-log, control, security-*):
// in-process CLI streams, and a raw-frame client over a real Unix socket.
import { connect, type Socket } from 'node:net'
import { PassThrough } from 'node:stream'
import type { CliIO } from '../../src/cli-io.js'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { computeClientProof, encodeFrame, FrameDecoder, generateNonce, ProxySocketClient } from '@credproxy/core'
import type { OAuthBroker } from '../../src/oauth/broker.js'
import { resolvePaths, type CredproxyPaths } from '../../src/paths.js'
import { AuditLog, auditLogPath, readAuditEntries, type AuditLine } from '../../src/server/audit-log.js'
import { startControlChannel, type ControlChannel } from '../../src/server/control.js'
import { CredentialProxyServer } from '../../src/server/credential-proxy-server.js'
import type { GrantSet } from '../../src/server/grants.js'
import type { ServerLimits } from '../../src/server/limits.js'
import { createPeerCheck } from '../../src/server/peer-credentials.js'
import { openHostStores } from '../../src/storage/index.js'
import type { HostStores } from '../../src/storage/types.js'

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

/** A raw-frame client: every byte received is kept for byte scans. */
export class RawClient {
  readonly received: Buffer[] = []
  /** Frames not yet taken by next()/request(). */
  readonly frames: Record<string, unknown>[] = []
  /** Every frame ever received, in order. */
  readonly framesSeen: Record<string, unknown>[] = []
  closed = false
  #decoder = new FrameDecoder()
  #waiters: Array<() => void> = []

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.received.push(chunk)
      try {
        const decoded = this.#decoder.push(chunk)
        this.frames.push(...decoded)
        this.framesSeen.push(...decoded)
      } catch {
        socket.destroy()
      }
      this.#wake()
    })
    socket.on('error', () => undefined)
    socket.on('close', () => {
      this.closed = true
      this.#wake()
    })
  }

  static connect(path: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(path)
      socket.once('connect', () => resolve(new RawClient(socket)))
      socket.once('error', reject)
    })
  }

  send(message: object): void {
    this.socket.write(encodeFrame(message))
  }

  sendBytes(bytes: Buffer): void {
    this.socket.write(bytes)
  }

  /** The next frame not yet taken, or null once the server closed the connection. */
  async next(): Promise<Record<string, unknown> | null> {
    for (;;) {
      const frame = this.frames.shift()
      if (frame !== undefined) return frame
      if (this.closed) return null
      await new Promise<void>((resolve) => this.#waiters.push(resolve))
    }
  }

  /** Send a request and wait for the answer with that id (other frames are kept in order). */
  async request(id: string, op: string, payload?: unknown, v = 3): Promise<Record<string, unknown> | null> {
    this.send(payload === undefined ? { v, id, op } : { v, id, op, payload })
    for (;;) {
      const index = this.frames.findIndex((frame) => frame['id'] === id)
      if (index !== -1) return this.frames.splice(index, 1)[0] ?? null
      if (this.closed) return null
      await new Promise<void>((resolve) => this.#waiters.push(resolve))
    }
  }

  /** Resolves once the server has closed the connection. */
  async waitClosed(): Promise<void> {
    while (!this.closed) await new Promise<void>((resolve) => this.#waiters.push(resolve))
  }

  bytes(): Buffer {
    return Buffer.concat(this.received)
  }

  close(): void {
    this.socket.destroy()
  }

  #wake(): void {
    for (const waiter of this.#waiters.splice(0)) waiter()
  }
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
  /** Every audit line written so far (flushes first). */
  auditLines(): Promise<AuditLine[]>
  /** The audit file's raw text (flushes first). */
  auditText(): Promise<string>
  cleanup(): Promise<void>
}

export interface SecureSessionOptions {
  grants?: GrantSet
  limits?: Partial<ServerLimits>
  allowedUids?: number[]
  oauth?: (stores: HostStores, paths: CredproxyPaths) => Promise<OAuthBroker>
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
    ...(oauth ? { oauth } : {}),
    runtimeDir: paths.runtimeDir,
    grants: options.grants ?? { providers: [], keys: [], capabilities: [] },
    peerCheck: createPeerCheck({ ...(options.allowedUids ? { allowedUids: options.allowedUids } : {}), log }),
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
      const clientNonce = generateNonce()
      raw.send({ v: 3, op: 'handshake', payload: { minVersion: 3, maxVersion: 3, clientNonce } })
      const hello = await raw.next()
      const serverNonce = (hello?.['data'] as { serverNonce?: string } | undefined)?.serverNonce ?? ''
      raw.send({ v: 3, op: 'handshake_finish', payload: { clientProof: computeClientProof(started.secret, serverNonce, clientNonce) } })
      const finish = await raw.next()
      if (finish?.['ok'] !== true) throw new Error(`handshake failed: ${JSON.stringify(finish)}`)
      return raw
    },
    async auditLines() {
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
