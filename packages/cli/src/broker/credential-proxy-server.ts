// CredentialProxyServer: ONE server = ONE sandbox session = ONE socket. Owns the
// listening socket and its directory, the session secret and grants, and the set
// of live connections; each connection runs in broker-connection.ts and hands its
// requests to the session's one RequestHandler (dispatch.ts).
import { createServer, type Server, type Socket } from 'node:net'
import { encodeFrame, generateSessionSecret, MIN_PROTOCOL_VERSION, safeMessage, SESSION_SECRET_BYTES } from '@credproxy/core'
import type { OAuthBroker } from '../oauth/broker.js'
import type { CredentialSource } from '../credentials/credential-source.js'
import { StoredCredentialSource } from '../credentials/stored-credential-source.js'
import { resolvePaths } from '../paths.js'
import type { HostStores } from '../storage/types.js'
import { BrokerConnection, type ConnectionSummary } from './broker-connection.js'
import { RequestHandler } from './dispatch.js'
import { SessionGrants, type GrantSet } from './grants.js'
import { AuditBudget, type AuditBudgetOptions } from '../audit/audit-budget.js'
import type { AuditEntry, AuditSink, PeerCheck, PeerInfo } from './hooks.js'
import { resolveLimits, type ServerLimits } from './limits.js'
import type { Clock } from './rate-limit.js'
import {
  bindAtPath,
  bindInSessionDir,
  generateSessionId,
  SESSION_ID_PATTERN,
  unbind,
  type BoundSocket,
} from '../control/socket-path.js'

export interface CredentialProxyServerOptions {
  stores: HostStores
  /** The one door to credentials; default: the stores as they are (no refresh). */
  credentials?: CredentialSource
  /** OAuth logins. Without it: oauth_* answer PROVIDER_NOT_CONFIGURED. */
  oauth?: OAuthBroker
  /** Explicit socket path; default <runtimeDir>/<sessionId>/broker.sock. */
  socketPath?: string
  runtimeDir?: string
  sessionId?: string
  /** 32 bytes; generated when absent. */
  secret?: Buffer
  /** Default: nothing granted. */
  grants?: GrantSet
  /** Serve protocol v1/v2 clients (they cannot prove the session secret). */
  allowLegacyClients?: boolean
  /**
   * The bearer token legacy clients must present. Without one, legacy clients are
   * admitted on the peer check alone (llxprt-code's inner client sends no token),
   * so that mode requires a peerCheck. Never the session secret: a v3 secret must
   * not travel in the clear to whatever listens on the path.
   */
  legacyToken?: string
  peerCheck?: PeerCheck
  audit?: AuditSink
  /** Tuning of the session's audit budget (tests); the defaults are in audit-budget.ts. */
  auditBudget?: AuditBudgetOptions
  limits?: Partial<ServerLimits>
  /** Host log lines (never sent to a peer, never a secret). */
  log?: (line: string) => void
  /** Clock for the rate limiter (tests). */
  clock?: Clock
}

export interface StartedServer {
  socketPath: string
  sessionId: string
  secret: Buffer
}

export type PeerSummary = ConnectionSummary

const REFUSED_CLOSE_MS = 1_000

export class CredentialProxyServer {
  readonly #options: CredentialProxyServerOptions
  readonly #sessionId: string
  readonly #secret: Buffer
  readonly #grants: SessionGrants
  readonly #limits: ServerLimits
  readonly #requests: RequestHandler
  readonly #connections = new Set<BrokerConnection>()
  /** Two budgets (limits.ts): still in the handshake, oldest first; and authenticated. */
  readonly #pending = new Set<BrokerConnection>()
  readonly #established = new Set<BrokerConnection>()
  readonly #refused = new Set<Socket>()
  /** The audit sink behind this session's budget (a flood is summarized, not written line by line). */
  readonly #auditSink: AuditBudget | undefined
  #server: Server | undefined
  #bound: BoundSocket | undefined
  #stopping: Promise<void> | undefined

  constructor(options: CredentialProxyServerOptions) {
    this.#options = options
    this.#sessionId = options.sessionId ?? generateSessionId()
    if (!SESSION_ID_PATTERN.test(this.#sessionId)) {
      throw new RangeError('sessionId must be 8-64 characters of A-Z a-z 0-9 _ -')
    }
    this.#secret = options.secret ?? generateSessionSecret()
    if (this.#secret.length !== SESSION_SECRET_BYTES) throw new RangeError(`secret must be ${SESSION_SECRET_BYTES} bytes`)
    if (options.legacyToken !== undefined && options.legacyToken.length === 0) {
      throw new RangeError('legacyToken must not be empty')
    }
    if (options.allowLegacyClients === true && options.legacyToken === undefined && options.peerCheck === undefined) {
      throw new RangeError('legacy clients without a token are admitted on the peer check alone: pass a peerCheck or a legacyToken')
    }
    this.#grants = new SessionGrants(this.#sessionId, options.grants ?? { providers: [], keys: [], capabilities: [] })
    this.#limits = resolveLimits(options.limits)
    this.#requests = new RequestHandler({
      credentials: options.credentials ?? new StoredCredentialSource(options.stores),
      logins: options.oauth,
      grants: this.#grants,
      sessionId: this.#sessionId,
      limits: this.#limits,
      log: (line) => this.#log(line),
    })
    this.#auditSink = options.audit === undefined ? undefined : new AuditBudget(options.audit, options.auditBudget)
  }

  get sessionId(): string {
    return this.#sessionId
  }

  /** Mutable at runtime; a change applies to the next request of every connection. */
  get grants(): SessionGrants {
    return this.#grants
  }

  get limits(): Readonly<ServerLimits> {
    return this.#limits
  }

  get socketPath(): string | undefined {
    return this.#bound?.socketPath
  }

  async start(): Promise<StartedServer> {
    if (this.#server !== undefined) throw new Error('server already started')
    const server = createServer({ pauseOnConnect: true }, (socket) => this.#onConnection(socket))
    this.#server = server
    try {
      this.#bound =
        this.#options.socketPath !== undefined
          ? await bindAtPath(server, this.#options.socketPath)
          : await bindInSessionDir(server, this.#options.runtimeDir ?? resolvePaths().runtimeDir, this.#sessionId)
    } catch (error) {
      this.#server = undefined
      server.close()
      throw error
    }
    this.#log(`session ${this.#sessionId} listening on ${this.#bound.socketPath}`)
    return { socketPath: this.#bound.socketPath, sessionId: this.#sessionId, secret: this.#secret }
  }

  /** Idempotent. Resolves once the socket and the session directory are gone. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop()
    return this.#stopping
  }

  /** Write the audit summaries of the current budget interval now (tests, `credproxy audit` freshness). */
  flushAudit(): void {
    this.#auditSink?.flush()
  }

  /** The connections holding a slot (an evicted one, still closing, holds none). */
  peers(): PeerSummary[] {
    return [...this.#pending, ...this.#established].map((c) => c.summary())
  }

  async #stop(): Promise<void> {
    const server = this.#server
    if (server === undefined) return
    const closed = new Promise<void>((resolve) => server.close(() => resolve()))
    const deadline = Date.now() + this.#limits.drainTimeoutMs
    const connections = [...this.#connections]
    for (const c of connections) c.beginDrain()
    for (const s of this.#refused) s.destroy()
    await withDeadline(Promise.all(connections.map((c) => c.whenIdle())), deadline)
    for (const c of connections) c.finishDrain()
    await withDeadline(Promise.all(connections.map((c) => c.closed)), deadline)
    for (const c of connections) c.destroy()
    await closed
    if (this.#bound !== undefined) await unbind(this.#bound)
    this.#auditSink?.flush()
    this.#log(`session ${this.#sessionId} stopped`)
  }

  #onConnection(socket: Socket): void {
    socket.on('error', () => undefined)
    if (this.#stopping !== undefined) {
      socket.destroy()
      return
    }
    let peer: PeerInfo | null = null
    const check = this.#options.peerCheck
    if (check !== undefined) {
      let decision: ReturnType<PeerCheck>
      try {
        decision = check(socket)
      } catch (error) {
        this.#log(`peer check failed: ${String(error)}`)
        decision = { ok: false, peer: null, reason: 'peer-check-error' }
      }
      if (!decision.ok) {
        this.#audit({ event: 'connection_refused', peer: decision.peer, outcome: 'FORBIDDEN', reason: decision.reason })
        this.#refuse(socket, 'FORBIDDEN', safeMessage('FORBIDDEN'))
        return
      }
      peer = decision.peer
    }
    // Held unauthenticated sockets must not lock a real client out: the oldest one makes room.
    if (this.#pending.size >= this.#limits.maxPendingHandshakesPerSession) {
      const oldest = this.#pending.values().next().value
      if (oldest !== undefined) {
        this.#pending.delete(oldest)
        oldest.evict()
      }
    }
    const connection = new BrokerConnection(socket, peer, {
      sessionId: this.#sessionId,
      secret: this.#secret,
      allowLegacyClients: this.#options.allowLegacyClients ?? false,
      legacyToken: this.#options.legacyToken,
      limits: this.#limits,
      requests: this.#requests,
      audit: (entry) => this.#audit(entry),
      log: (line) => this.#log(line),
      admit: (c) => this.#admit(c),
      ...(this.#options.clock === undefined ? {} : { clock: this.#options.clock }),
    })
    this.#connections.add(connection)
    this.#pending.add(connection)
    socket.once('close', () => {
      this.#connections.delete(connection)
      this.#pending.delete(connection)
      this.#established.delete(connection)
    })
    socket.resume()
  }

  /**
   * A connection that proved the secret gets an authenticated slot; at the cap the
   * least recently active idle one gives up its slot (only the sandbox's own clients
   * hold these, and the client library reconnects on its next request).
   */
  #admit(connection: BrokerConnection): boolean {
    this.#pending.delete(connection)
    if (this.#established.size >= this.#limits.maxConnectionsPerSession) {
      let victim: BrokerConnection | undefined
      for (const c of this.#established) {
        if (c.idle && (victim === undefined || c.lastActiveAt < victim.lastActiveAt)) victim = c
      }
      if (victim === undefined) return false
      this.#established.delete(victim)
      victim.evict()
    }
    this.#established.add(connection)
    return true
  }

  /** Tell the peer why (a handshake-shaped answer, as that is what it waits for), without reading a byte. */
  #refuse(socket: Socket, code: 'FORBIDDEN', message: string): void {
    this.#refused.add(socket)
    socket.once('close', () => this.#refused.delete(socket))
    // No byte of the peer's handshake was read: v1 is the version every client speaks.
    socket.end(encodeFrame({ v: MIN_PROTOCOL_VERSION, op: 'handshake', ok: false, code, error: message }))
    setTimeout(() => socket.destroy(), REFUSED_CLOSE_MS).unref()
  }

  #audit(entry: Omit<AuditEntry, 'session'>): void {
    const sink = this.#auditSink
    if (sink === undefined) return
    // Every caller builds a fresh entry, so it is completed in place rather than copied.
    const full = entry as AuditEntry
    full.session = this.#sessionId
    try {
      sink.write(full)
    } catch (error) {
      this.#log(`audit sink failed: ${String(error)}`)
    }
  }

  #log(line: string): void {
    this.#options.log?.(line)
  }
}

function withDeadline(promise: Promise<unknown>, deadlineMs: number): Promise<void> {
  const remaining = Math.max(0, deadlineMs - Date.now())
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, remaining)
    void promise.then(() => {
      clearTimeout(timer)
      resolve()
    })
  })
}
