// One accepted socket: runs the handshake machine (handshake-machine.ts), frame
// limits and timers, backpressure, the in-flight table (cancel, exactly one answer
// per id) and audit; every request goes to the session's one RequestHandler.
// Wire spec: dev-docs/protocol.md "Handshake" and "Requests and responses".
import type { Socket } from 'node:net'
import {
  encodeFrame,
  FrameDecoder,
  FrameError,
  generateNonce,
  isOpName,
  MAX_FRAME_BYTES,
  maxFrameBytesFor,
  ProxyError,
  RequestEnvelopeSchema,
  RequestIdSchema,
  safeMessage,
  type ErrorCode,
} from '@credproxy/core'
import { legacyRefusal, type ParsedRequest, type RequestHandler, type RequestNames } from './dispatch.js'
import {
  handshakeStep,
  INITIAL_HANDSHAKE_STATE,
  refuseAdmission,
  type HandshakeConfig,
  type HandshakeFailure,
  type HandshakeState,
} from './handshake-machine.js'
import type { AuditEntry, PeerInfo } from './hooks.js'
import { MAX_HANDSHAKE_FRAME_BYTES, type ServerLimits } from './limits.js'
import { TokenBucket, type Clock } from './rate-limit.js'

/** What every connection of one session shares with the server. */
export interface ConnectionHost {
  sessionId: string
  secret: Buffer
  allowLegacyClients: boolean
  /** undefined: legacy clients are admitted on the peer check alone. */
  legacyToken: string | undefined
  limits: ServerLimits
  /** The session's one request handler (grants, credentials, logins). */
  requests: RequestHandler
  audit: (entry: Omit<AuditEntry, 'session'>) => void
  log: (line: string) => void
  clock?: Clock
  /** Called when the handshake succeeds: false if no authenticated slot can be freed. */
  admit?: (connection: BrokerConnection) => boolean
}

export { LEGACY_REFUSED_MESSAGE } from './handshake-machine.js'
const SHUTTING_DOWN_MESSAGE = 'The broker is shutting down.'
const EVICTED_PENDING_MESSAGE = 'Too many connections of this session are waiting for their handshake; the oldest was closed.'

// Codes only a client raises; a handler throwing one is a bug, answered as INTERNAL_ERROR.
const CLIENT_ONLY_CODES = new Set<ErrorCode>(['TIMEOUT', 'CONNECTION_FAILED', 'PROTOCOL_ERROR', 'SERVER_UNVERIFIED'])

type State = 'AWAIT_HANDSHAKE' | 'AWAIT_FINISH' | 'READY' | 'DRAINING' | 'CLOSING' | 'CLOSED'

interface InFlight {
  id: string
  op: string
  names: RequestNames
  startedAt: number
  answered: boolean
}

type Answer = { ok: true; data: Record<string, unknown> } | { ok: false; code: ErrorCode; error: string; retryAfter?: number }

export interface ConnectionSummary {
  pid?: number
  uid?: number
  sandboxPid?: number
  connectedAt: number
  version?: number
  /** Answer bytes written but not yet taken by the peer. */
  bufferedBytes: number
  /** true while reading is paused because the peer does not take its answers. */
  readingPaused: boolean
  inFlight: number
}

export class BrokerConnection {
  readonly connectedAt = Date.now()
  readonly closed: Promise<void>
  #state: State = 'AWAIT_HANDSHAKE'
  #version: number | undefined
  #handshake: HandshakeState = INITIAL_HANDSHAKE_STATE
  readonly #handshakeConfig: HandshakeConfig
  // Small until the handshake settles: an unauthenticated peer cannot make the broker buffer megabytes.
  readonly #decoder = new FrameDecoder({ maxFrameBytes: MAX_HANDSHAKE_FRAME_BYTES })
  #lastActiveAt = performance.now()
  #queue: Record<string, unknown>[] = []
  #queueHead = 0
  readonly #inFlight = new Map<string, InFlight>()
  readonly #rate: TokenBucket
  #readingPaused = false
  /** Reading stopped because the next request needs an in-flight slot (backpressure, not an error). */
  #slotWait = false
  #handshakeTimer: NodeJS.Timeout | undefined
  #partialTimer: NodeJS.Timeout | undefined
  #closeTimer: NodeJS.Timeout | undefined
  #idleWaiters: Array<() => void> = []

  constructor(
    readonly socket: Socket,
    readonly peer: PeerInfo | null,
    private readonly host: ConnectionHost,
  ) {
    const { limits } = host
    this.#handshakeConfig = {
      sessionId: host.sessionId,
      secret: host.secret,
      allowLegacyClients: host.allowLegacyClients,
      legacyToken: host.legacyToken,
      nonce: generateNonce,
    }
    this.#rate = new TokenBucket(limits.rateLimitPerSecond, limits.rateLimitBurst, host.clock)
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()))
    socket.on('error', () => undefined) // 'close' follows; the error itself says nothing to act on.
    socket.once('close', () => this.#onClose())
    socket.on('data', (chunk: Buffer) => this.#onData(chunk))
    this.#handshakeTimer = setTimeout(() => this.#onHandshakeTimeout(), limits.handshakeTimeoutMs)
  }

  get version(): number | undefined {
    return this.#version
  }

  /** Authenticated, and no request of it is being handled: its slot can go to a new client. */
  get idle(): boolean {
    return this.#settled() && this.#inFlight.size === 0
  }

  /** performance.now() of its last request (or of its handshake, or accept). */
  get lastActiveAt(): number {
    return this.#lastActiveAt
  }

  /** Give this connection's slot to a newer client (a pending one is told why; an idle one is just closed). */
  evict(): void {
    if (this.#state === 'CLOSING' || this.#state === 'CLOSED') return
    const pending = !this.#settled()
    this.#audit({ event: 'connection_evicted', outcome: 'RESOURCE_EXHAUSTED', reason: pending ? 'pending-handshake' : 'idle-connection' })
    if (pending) this.#send({ op: 'handshake', ok: false, code: 'RESOURCE_EXHAUSTED', error: EVICTED_PENDING_MESSAGE })
    this.#state = 'CLOSING'
    clearTimeout(this.#handshakeTimer)
    this.#clearPartialTimer()
    // Half-close only: a peer still writing (its handshake_finish) must not get EPIPE before it reads why.
    this.socket.end()
    this.#closeTimer = setTimeout(() => this.destroy(), this.host.limits.failedHandshakeCloseMs)
  }

  summary(): ConnectionSummary {
    const s: ConnectionSummary = {
      connectedAt: this.connectedAt,
      bufferedBytes: this.socket.writableLength,
      readingPaused: this.#readingPaused || this.#slotWait,
      inFlight: this.#inFlight.size,
    }
    if (this.peer !== null) {
      s.pid = this.peer.pid
      s.uid = this.peer.uid
      if (this.peer.sandboxPid !== undefined) s.sandboxPid = this.peer.sandboxPid
    }
    if (this.#version !== undefined) s.version = this.#version
    return s
  }

  // ---- shutdown (driven by CredentialProxyServer.stop) ---------------------------

  /** Stop taking requests: new ones are answered CANCELLED; unsettled handshakes are closed. */
  beginDrain(): void {
    if (this.#state === 'READY') this.#state = 'DRAINING'
    else if (this.#state === 'AWAIT_HANDSHAKE' || this.#state === 'AWAIT_FINISH') this.destroy()
  }

  /** Resolves once nothing is in flight (or the socket is gone). */
  whenIdle(): Promise<void> {
    if (this.#inFlight.size === 0 || this.#state === 'CLOSED') return Promise.resolve()
    return new Promise((resolve) => this.#idleWaiters.push(resolve))
  }

  /** Answer every request still in flight with CANCELLED, then half-close. */
  finishDrain(): void {
    for (const [id, entry] of this.#inFlight) this.#answer(id, entry, this.#error('CANCELLED', SHUTTING_DOWN_MESSAGE))
    if (!this.socket.destroyed) this.socket.end()
  }

  destroy(): void {
    // 'close' comes later; frames still queued behind the fatal one must not run meanwhile.
    if (this.#state !== 'CLOSED') this.#state = 'CLOSING'
    this.socket.destroy()
  }

  // ---- bytes in -------------------------------------------------------------------

  #onData(chunk: Buffer): void {
    if (this.#state === 'CLOSING' || this.#state === 'CLOSED') return
    let frames: Record<string, unknown>[]
    try {
      frames = this.#decoder.push(chunk)
    } catch (error) {
      this.#onFrameError(error)
      return
    }
    for (const frame of frames) this.#queue.push(frame)
    this.#pump()
    this.#updatePartialTimer()
  }

  #onFrameError(error: unknown): void {
    const reason = error instanceof FrameError ? error.reason.toLowerCase().replaceAll('_', '-') : 'frame-error'
    this.host.log(`closing a connection of session ${this.host.sessionId}: ${reason}`)
    if (this.#settled()) this.#audit({ event: 'request', outcome: 'INVALID_REQUEST', reason })
    else this.#audit({ event: 'handshake_failed', outcome: 'INVALID_REQUEST', reason })
    // No id can be recovered from a broken frame, and the stream is out of step: close.
    this.destroy()
  }

  /** Handle queued frames until the peer stops taking answers; then stop reading until it drains. */
  #pump(): void {
    while (this.#queueHead < this.#queue.length) {
      if (this.#overBuffered()) break
      if (this.#state === 'CLOSING' || this.#state === 'CLOSED') {
        this.#queue = []
        this.#queueHead = 0
        return
      }
      const frame = this.#queue[this.#queueHead] as Record<string, unknown>
      if (this.#needsSlot(frame)) {
        this.#waitForSlot()
        break
      }
      this.#queueHead++
      this.#onFrame(frame)
    }
    if (this.#queueHead >= this.#queue.length) {
      this.#queue = []
      this.#queueHead = 0
    }
    if (this.#overBuffered()) this.#pauseReading()
  }

  /** A request that would go over the in-flight limit waits in the queue (`cancel` needs no slot). */
  #needsSlot(frame: Record<string, unknown>): boolean {
    return this.#state === 'READY' && frame['op'] !== 'cancel' && this.#inFlight.size >= this.host.limits.maxInFlightPerConnection
  }

  /**
   * Stop reading until a slot frees: the kernel's socket buffer fills and the peer's
   * writes block, so a client pipelining more than the limit is slowed, never refused.
   * Cancels queued behind are handled now: they need no slot and may free one.
   */
  #waitForSlot(): void {
    for (let i = this.#queueHead + 1; i < this.#queue.length; i++) {
      const frame = this.#queue[i] as Record<string, unknown>
      if (frame['op'] !== 'cancel') continue
      this.#queue.splice(i--, 1)
      this.#onFrame(frame)
    }
    if (this.#slotWait || this.socket.destroyed) return
    this.#slotWait = true
    this.socket.pause()
    this.#clearPartialTimer()
  }

  /** A slot freed: handle what waited, and read again unless still blocked. */
  #onSlotFreed(): void {
    if (!this.#slotWait) return
    this.#slotWait = false
    this.#pump()
    if (!this.#slotWait && !this.#readingPaused && !this.socket.destroyed) {
      this.socket.resume()
      this.#updatePartialTimer()
    }
  }

  #overBuffered(): boolean {
    return this.socket.writableLength > this.host.limits.maxBufferedBytesPerConnection
  }

  #pauseReading(): void {
    if (this.#readingPaused || this.socket.destroyed) return
    this.#readingPaused = true
    this.socket.pause()
    // A peer that is not reading is not mid-frame by choice: the partial-frame clock stops.
    this.#clearPartialTimer()
    this.socket.once('drain', () => {
      this.#readingPaused = false
      this.#pump()
      if (!this.#readingPaused && !this.#slotWait && !this.socket.destroyed) {
        this.socket.resume()
        this.#updatePartialTimer()
      }
    })
  }

  #updatePartialTimer(): void {
    if (this.#readingPaused || this.#slotWait || this.#state === 'CLOSED') return
    if (this.#decoder.hasPartialFrame) {
      this.#partialTimer ??= setTimeout(() => this.#onPartialTimeout(), this.host.limits.partialFrameTimeoutMs)
    } else {
      this.#clearPartialTimer()
    }
  }

  #clearPartialTimer(): void {
    clearTimeout(this.#partialTimer)
    this.#partialTimer = undefined
  }

  #onPartialTimeout(): void {
    this.#partialTimer = undefined
    this.host.log(`closing a connection of session ${this.host.sessionId}: partial frame not completed in time`)
    this.#audit({
      event: this.#settled() ? 'request' : 'handshake_failed',
      outcome: 'INVALID_REQUEST',
      reason: 'partial-frame-timeout',
    })
    this.destroy()
  }

  #onHandshakeTimeout(): void {
    this.#handshakeTimer = undefined
    if (this.#settled() || this.#state === 'CLOSED') return
    this.#audit({ event: 'handshake_failed', outcome: 'UNAUTHORIZED', reason: 'handshake-timeout' })
    this.destroy()
  }

  #onClose(): void {
    this.#state = 'CLOSED'
    clearTimeout(this.#handshakeTimer)
    clearTimeout(this.#closeTimer)
    this.#clearPartialTimer()
    this.#queue = []
    this.#queueHead = 0
    this.#notifyIdle(true)
  }

  #settled(): boolean {
    return this.#state === 'READY' || this.#state === 'DRAINING'
  }

  #onFrame(frame: Record<string, unknown>): void {
    switch (this.#state) {
      case 'AWAIT_HANDSHAKE':
      case 'AWAIT_FINISH':
        this.#onHandshakeFrame(frame)
        return
      case 'READY':
      case 'DRAINING':
        this.#onRequest(frame)
        return
      default:
        return
    }
  }

  // ---- handshake ------------------------------------------------------------------

  /** Run one frame through the handshake machine and carry out what it decided. */
  #onHandshakeFrame(frame: Record<string, unknown>): void {
    const step = handshakeStep(this.#handshakeConfig, this.#handshake, frame)
    this.#handshake = step.next
    switch (step.action.type) {
      case 'continue':
        this.#state = 'AWAIT_FINISH'
        this.#send(step.send)
        return
      case 'fail':
        this.#failHandshake({ next: { phase: 'failed' }, send: step.send, action: step.action })
        return
      case 'settle':
        if (!this.#settle(step.action.version, step.action.op)) return
        this.#send(step.send)
        return
    }
  }

  /** false: refused (every authenticated slot is busy), and the peer was told. */
  #settle(version: number, op: string): boolean {
    if (this.host.admit !== undefined && !this.host.admit(this)) {
      this.#failHandshake(refuseAdmission(op, version, this.host.limits.maxConnectionsPerSession))
      return false
    }
    clearTimeout(this.#handshakeTimer)
    this.#handshakeTimer = undefined
    // Counts as activity: a client between its handshake and its first request is not the idle one to evict.
    this.#lastActiveAt = performance.now()
    this.#version = version
    this.#state = 'READY'
    this.#decoder.setMaxFrameBytes(maxFrameBytesFor(version))
    this.#audit({ event: 'handshake_ok', outcome: 'ok' })
    return true
  }

  /** Answer, half-close, and destroy within failedHandshakeCloseMs. */
  #failHandshake(step: HandshakeFailure): void {
    this.#handshake = step.next
    this.#audit({ event: 'handshake_failed', outcome: step.action.code, reason: step.action.reason })
    this.#state = 'CLOSING'
    clearTimeout(this.#handshakeTimer)
    this.#handshakeTimer = undefined
    this.#clearPartialTimer()
    this.#send(step.send)
    this.socket.end()
    this.#closeTimer = setTimeout(() => this.destroy(), this.host.limits.failedHandshakeCloseMs)
  }

  // ---- requests -------------------------------------------------------------------

  #onRequest(frame: Record<string, unknown>): void {
    const startedAt = performance.now()
    this.#lastActiveAt = startedAt
    const envelope = readEnvelope(frame) ?? RequestEnvelopeSchema.safeParse(frame)
    if (!envelope.success) {
      const id = RequestIdSchema.safeParse(frame['id'])
      if (!id.success) {
        // Without an id no answer can be matched; a peer this confused is closed.
        this.#audit({ event: 'request', outcome: 'INVALID_REQUEST', reason: 'no-request-id' })
        this.destroy()
        return
      }
      this.#reject(id.data, undefined, {}, startedAt, 'INVALID_REQUEST', 'The request envelope is malformed.')
      return
    }
    const { id, op, payload } = envelope.data
    if (this.#inFlight.has(id)) {
      this.#reject(id, undefined, {}, startedAt, 'INVALID_REQUEST', 'A request with this id is already in flight.')
      return
    }
    // Only known op names reach the audit log; anything else is peer-supplied text.
    const auditOp = isOpName(op) ? op : undefined
    if (this.#state === 'DRAINING') {
      this.#reject(id, auditOp, {}, startedAt, 'CANCELLED', SHUTTING_DOWN_MESSAGE)
      return
    }
    const take = this.#rate.take()
    if (!take.ok) {
      this.#reject(id, auditOp, {}, startedAt, 'RATE_LIMITED', safeMessage('RATE_LIMITED'), take.retryAfterSeconds)
      return
    }
    const admission = this.host.requests.admit(op, payload, this.#version ?? 1)
    if (admission.kind === 'refuse') {
      this.#reject(id, auditOp, admission.names, startedAt, admission.code, admission.message)
      return
    }
    if (admission.kind === 'cancel') {
      this.#cancel(id, admission.targetId, startedAt)
      return
    }
    const { request, names, refusal } = admission
    if (this.#inFlight.size >= this.host.limits.maxInFlightPerConnection) {
      const message = `At most ${this.host.limits.maxInFlightPerConnection} requests may be in flight per connection.`
      this.#reject(id, op, names, startedAt, 'RESOURCE_EXHAUSTED', message)
      return
    }
    if (refusal !== null) {
      const legacy = (this.#version ?? 1) < 3 ? legacyRefusal(request.op, refusal) : null
      if (legacy === null) this.#reject(id, op, names, startedAt, refusal.code, refusal.message)
      else {
        // The audit line (and the host's hint) still says what happened: NOT_GRANTED.
        this.#send(legacy.ok ? { id, ok: true, data: legacy.data } : { id, ...this.#error(legacy.code, legacy.message) })
        this.#auditRequest(op, names, refusal.code, startedAt)
      }
      return
    }
    const entry: InFlight = { id, op, names, startedAt, answered: false }
    this.#inFlight.set(id, entry)
    void this.#run(entry, request)
  }

  async #run(entry: InFlight, request: ParsedRequest): Promise<void> {
    let answer: Answer
    try {
      answer = { ok: true, data: await this.host.requests.execute(request) }
    } catch (error) {
      answer = this.#errorAnswer(entry.op, error)
    }
    // The slot is freed only here, when the host work is over (a cancelled request was answered already).
    if (this.#inFlight.get(entry.id) === entry) this.#inFlight.delete(entry.id)
    this.#answer(entry.id, entry, answer)
    this.#notifyIdle(false)
    this.#onSlotFreed()
  }

  #cancel(id: string, targetId: string, startedAt: number): void {
    const target = this.#inFlight.get(targetId)
    const cancelled = target !== undefined && !target.answered
    if (cancelled) this.#answer(targetId, target, this.#error('CANCELLED', safeMessage('CANCELLED')))
    this.#send({ id, ok: true, data: { cancelled } })
    this.#auditRequest('cancel', {}, 'ok', startedAt)
  }

  #errorAnswer(op: string, error: unknown): Answer {
    if (error instanceof ProxyError && error.expose) return this.#error(error.code, error.message, error.retryAfter)
    if (error instanceof ProxyError && !CLIENT_ONLY_CODES.has(error.code)) {
      if (error.code === 'INTERNAL_ERROR') this.host.log(`${op} failed: ${describe(error)}`)
      return this.#error(error.code, safeMessage(error.code), error.retryAfter)
    }
    // The raw error stays in the host log; the peer gets the fixed message.
    this.host.log(`${op} failed: ${describe(error)}`)
    return this.#error('INTERNAL_ERROR', safeMessage('INTERNAL_ERROR'))
  }

  #error(code: ErrorCode, error: string, retryAfter?: number): Answer {
    return retryAfter === undefined ? { ok: false, code, error } : { ok: false, code, error, retryAfter }
  }

  /** Answer a request that never entered the in-flight table. */
  #reject(
    id: string,
    op: string | undefined,
    names: RequestNames,
    startedAt: number,
    code: ErrorCode,
    message: string,
    retryAfter?: number,
  ): void {
    this.#send({ id, ...this.#error(code, message, retryAfter) })
    this.#auditRequest(op, names, code, startedAt)
  }

  /**
   * The one answer of an in-flight request; later ones (after cancel) are dropped.
   * The entry stays in the table until its handler settles (#run), so cancel frees no slot.
   */
  #answer(id: string, entry: InFlight, answer: Answer): void {
    if (entry.answered) return
    entry.answered = true
    this.#send(answer.ok ? { id, ok: true, data: answer.data } : { id, ...answer })
    this.#auditRequest(entry.op, entry.names, answer.ok ? 'ok' : answer.code, entry.startedAt)
    // An answer may have been what pushed the peer over its buffer; a drain resumes reading.
    if (!this.#readingPaused && this.#overBuffered()) this.#pauseReading()
  }

  #notifyIdle(force: boolean): void {
    if (!force && this.#inFlight.size > 0) return
    const waiters = this.#idleWaiters
    this.#idleWaiters = []
    for (const resolve of waiters) resolve()
  }

  // ---- bytes out ------------------------------------------------------------------

  #send(message: Record<string, unknown>): void {
    if (this.socket.destroyed || !this.socket.writable) return
    const limit = this.#version === undefined ? MAX_FRAME_BYTES : maxFrameBytesFor(this.#version)
    let frame: Buffer
    try {
      frame = encodeFrame(message, limit)
    } catch (error) {
      if (!(error instanceof FrameError) || typeof message['id'] !== 'string') throw error
      const code: ErrorCode = 'RESPONSE_TOO_LARGE'
      frame = encodeFrame({ id: message['id'], ok: false, code, error: safeMessage(code) }, limit)
    }
    this.socket.write(frame)
  }

  #auditRequest(op: string | undefined, names: RequestNames, outcome: 'ok' | ErrorCode, startedAt: number): void {
    // One object per line, in a fixed shape: the sink takes it as is (no copies on the request path).
    const entry: Omit<AuditEntry, 'session'> = {
      event: 'request',
      outcome,
      durationMs: performance.now() - startedAt,
      peer: this.peer,
    }
    if (op !== undefined) entry.op = op
    if (names.provider !== undefined) entry.provider = names.provider
    if (names.bucket !== undefined) entry.bucket = names.bucket
    if (names.key !== undefined) entry.key = names.key
    this.#emitAudit(entry)
  }

  #audit(entry: Omit<AuditEntry, 'session' | 'peer'>): void {
    this.#emitAudit({ ...entry, peer: this.peer })
  }

  #emitAudit(entry: Omit<AuditEntry, 'session'>): void {
    if (this.#version !== undefined) entry.protocolVersion = this.#version
    try {
      this.host.audit(entry)
    } catch (error) {
      this.host.log(`audit sink failed: ${describe(error)}`)
    }
  }
}

/**
 * The common case of RequestEnvelopeSchema without a zod pass: accepts only what the
 * schema accepts (same rules); anything else (null) goes through the schema itself.
 */
function readEnvelope(frame: Record<string, unknown>): { success: true; data: { id: string; op: string; payload: unknown } } | null {
  const { v, id, op } = frame
  if (typeof id !== 'string' || id.length < 1 || id.length > 128) return null
  if (typeof op !== 'string' || op.length < 1 || op.length > 64) return null
  if (v !== undefined && !(typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= 1_000_000)) return null
  return { success: true, data: { id, op, payload: frame['payload'] } }
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const cause = error.cause instanceof Error ? ` (cause: ${error.cause.message})` : ''
    return `${error.name}: ${error.message}${cause}`
  }
  return String(error)
}
