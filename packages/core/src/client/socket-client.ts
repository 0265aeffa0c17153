// ProxySocketClient: typed requests to the host broker over one lazily opened,
// lazily reopened Unix-socket connection. Normative spec: dev-docs/protocol.md.
//
// States: IDLE (no connection) -> CONNECTING -> HANDSHAKING -> READY -> back to
// IDLE when the connection closes or idles out; CLOSED after close(), for good.
import { backoffDelay } from '../backoff.js'
import { ProxyError } from '../protocol/errors.js'
import { MAX_IN_FLIGHT_REQUESTS } from '../protocol/limits.js'
import type { OpData, OpName, OpPayload, Response } from '../protocol/messages.js'
import { OP_MIN_VERSION } from '../protocol/versions.js'
import { isValidOpData, payloadProblem } from './answer-checks.js'
import type { ClientAuth } from './client-auth.js'
import { ClientConnection, type ConnectionState } from './client-connection.js'
import { errorFromAnswer } from './server-message.js'

/** A request not answered by then rejects with TIMEOUT (and is cancelled on the server, v2+). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000
/** An open connection with nothing pending is closed after this time. */
export const DEFAULT_IDLE_TIMEOUT_MS = 10_000
/** Connection attempts per burst before CONNECTION_FAILED. */
export const DEFAULT_CONNECT_ATTEMPTS = 3
/** Step before the second attempt, doubled for each further one; the wait is backoffDelay's (equal jitter). */
export const DEFAULT_RECONNECT_BASE_DELAY_MS = 100
/** Times one request is sent again after RATE_LIMITED before the caller sees the error. */
export const RATE_LIMIT_RETRIES = 5
/** A RATE_LIMITED whose retryAfter is longer than this (a refresh cool-down) goes to the caller at once. */
export const MAX_RATE_LIMIT_WAIT_MS = 1_000

export type ClientState = 'IDLE' | ConnectionState

export interface ProxySocketClientOptions {
  socketPath: string
  /** Session secret for the v3 mutual-proof handshake (preferred). */
  secret?: Buffer
  /** v1/v2 bearer token, used only when no secret is given (llxprt-compatible brokers). */
  legacyToken?: string
  requestTimeoutMs?: number
  idleTimeoutMs?: number
  connectAttempts?: number
  reconnectBaseDelayMs?: number
  handshakeTimeoutMs?: number
}

export interface RequestOptions {
  /** Overrides the client's requestTimeoutMs for this request. */
  timeoutMs?: number
  signal?: AbortSignal
}

interface Pending {
  readonly id: string
  readonly op: OpName
  readonly payload: unknown
  readonly resolve: (data: unknown) => void
  readonly reject: (error: ProxyError) => void
  timer: NodeJS.Timeout | undefined
  cleanupAbort: (() => void) | undefined
  /** The connection it was sent on; undefined while queued or waiting to retry. */
  sentOn: ClientConnection | undefined
  settled: boolean
  /** performance.now() past which the request has timed out. */
  readonly deadline: number
  rateLimitRetries: number
  retryTimer: NodeJS.Timeout | undefined
}

export class ProxySocketClient {
  readonly socketPath: string
  readonly #auth: ClientAuth
  readonly #requestTimeoutMs: number
  readonly #idleTimeoutMs: number
  readonly #connectAttempts: number
  readonly #reconnectBaseDelayMs: number
  readonly #handshakeTimeoutMs: number | undefined
  #connection: ClientConnection | undefined
  #connecting = false
  #closed = false
  #nextId = 1
  /** Waiting for a connection or for an in-flight slot. */
  #queue: Pending[] = []
  /** Sent on the current connection and not answered yet; null marks a request the caller gave up on (its slot stays taken until the server answers). */
  #inFlight = new Map<string, Pending | null>()
  /** The non-null entries of #inFlight, counted so the idle check on every send and answer is O(1). */
  #awaited = 0
  /** Answered RATE_LIMITED, waiting out the server's retryAfter before going back to #queue. */
  readonly #retrying = new Set<Pending>()
  #idleTimer: NodeJS.Timeout | undefined

  constructor(options: ProxySocketClientOptions) {
    this.socketPath = options.socketPath
    if (options.secret !== undefined) {
      this.#auth = { kind: 'v3', secret: options.secret }
    } else if (options.legacyToken !== undefined) {
      this.#auth = { kind: 'legacy', token: options.legacyToken }
    } else {
      throw new ProxyError('UNAUTHORIZED', 'ProxySocketClient needs a session secret (or a legacy token for v1/v2 brokers)')
    }
    this.#requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS
    this.#idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS
    this.#connectAttempts = Math.max(1, options.connectAttempts ?? DEFAULT_CONNECT_ATTEMPTS)
    this.#reconnectBaseDelayMs = options.reconnectBaseDelayMs ?? DEFAULT_RECONNECT_BASE_DELAY_MS
    this.#handshakeTimeoutMs = options.handshakeTimeoutMs
  }

  get state(): ClientState {
    if (this.#closed) return 'CLOSED'
    return this.#connection?.state ?? 'IDLE'
  }

  /** Negotiated protocol version of the open connection, 0 when none is open. */
  get version(): number {
    return this.#connection?.state === 'READY' ? this.#connection.version : 0
  }

  /** Session id named by a v3 broker. */
  get session(): string | undefined {
    return this.#connection?.session
  }

  /**
   * Send one request and resolve with its validated data. Rejects with ProxyError: the
   * server's code and message, or TIMEOUT, CANCELLED, CONNECTION_FAILED, PROTOCOL_ERROR.
   */
  request<O extends OpName>(op: O, payload: OpPayload<O>, options: RequestOptions = {}): Promise<OpData<O>> {
    if (this.#closed) return Promise.reject(new ProxyError('CONNECTION_FAILED', 'the broker client was closed'))
    const problem = payloadProblem(op, payload)
    if (problem !== undefined) return Promise.reject(new ProxyError('INVALID_REQUEST', `invalid ${op} payload (${problem})`))
    const signal = options.signal
    if (signal?.aborted) return Promise.reject(new ProxyError('CANCELLED', `${op} was cancelled`))
    const timeoutMs = options.timeoutMs ?? this.#requestTimeoutMs

    return new Promise<OpData<O>>((resolve, reject) => {
      const pending: Pending = {
        id: String(this.#nextId++),
        op,
        payload,
        resolve: resolve as (data: unknown) => void,
        reject,
        timer: undefined,
        cleanupAbort: undefined,
        sentOn: undefined,
        settled: false,
        deadline: performance.now() + timeoutMs,
        rateLimitRetries: 0,
        retryTimer: undefined,
      }
      // A ref'd timer keeps the process alive while the request is pending.
      pending.timer = setTimeout(() => {
        this.#giveUp(pending, new ProxyError('TIMEOUT', `the broker did not answer ${op} within ${timeoutMs} ms`))
      }, timeoutMs)
      if (signal) {
        const onAbort = () => this.#giveUp(pending, new ProxyError('CANCELLED', `${op} was cancelled`))
        signal.addEventListener('abort', onAbort, { once: true })
        pending.cleanupAbort = () => signal.removeEventListener('abort', onAbort)
      }
      this.#queue.push(pending)
      this.#pump()
    })
  }

  /** Close the connection and reject everything pending. Further requests fail at once. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    const error = new ProxyError('CONNECTION_FAILED', 'the broker client was closed')
    for (const pending of [...this.#queue, ...this.#inFlight.values(), ...this.#retrying]) if (pending) this.#settle(pending, error)
    this.#queue = []
    this.#inFlight.clear()
    this.#awaited = 0
    clearTimeout(this.#idleTimer)
    const connection = this.#connection
    this.#connection = undefined
    connection?.close()
  }

  // ---- dispatch -------------------------------------------------------------------

  #pump(): void {
    if (this.#closed) return
    const connection = this.#connection
    if (connection === undefined) {
      if (this.#queue.length > 0 && !this.#connecting) {
        this.#connect().catch((error: unknown) => {
          this.#failQueue(new ProxyError('CONNECTION_FAILED', `cannot connect to the credproxy broker at ${this.socketPath}`, { cause: error }))
        })
      }
    } else if (connection.state === 'READY') {
      while (this.#queue.length > 0 && this.#inFlight.size < MAX_IN_FLIGHT_REQUESTS) {
        const pending = this.#queue.shift()
        if (pending) this.#send(connection, pending)
      }
    }
    this.#updateIdle()
  }

  #send(connection: ClientConnection, pending: Pending): void {
    const minVersion = OP_MIN_VERSION[pending.op]
    if (connection.version < minVersion) {
      this.#settle(pending, new ProxyError('UNKNOWN_VERSION', `${pending.op} needs protocol v${minVersion}; the broker speaks v${connection.version}`))
      return
    }
    try {
      connection.send({ v: connection.version, id: pending.id, op: pending.op, payload: pending.payload })
    } catch (error) {
      this.#settle(pending, error instanceof ProxyError ? error : new ProxyError('INTERNAL_ERROR', 'could not send the request', { cause: error }))
      return
    }
    pending.sentOn = connection
    this.#inFlight.set(pending.id, pending)
    this.#awaited += 1
  }

  /** Timeout or abort: forget the request locally and ask the server to stop (v2+). */
  #giveUp(pending: Pending, error: ProxyError): void {
    if (pending.settled) return
    const connection = pending.sentOn
    if (connection === undefined) {
      this.#queue = this.#queue.filter((p) => p !== pending)
    } else if (connection === this.#connection && this.#inFlight.get(pending.id) === pending) {
      this.#inFlight.set(pending.id, null)
      this.#awaited -= 1
      if (connection.version >= OP_MIN_VERSION.cancel && connection.state === 'READY') {
        try {
          connection.send({ v: connection.version, id: String(this.#nextId++), op: 'cancel', payload: { targetId: pending.id } })
        } catch {
          // The connection is going away; the server drops the request with it.
        }
      }
    }
    this.#settle(pending, error)
    this.#updateIdle()
  }

  #settle(pending: Pending, outcome: ProxyError | { data: unknown }): void {
    if (pending.settled) return
    pending.settled = true
    clearTimeout(pending.timer)
    clearTimeout(pending.retryTimer)
    this.#retrying.delete(pending)
    pending.cleanupAbort?.()
    if (outcome instanceof ProxyError) pending.reject(outcome)
    else pending.resolve(outcome.data)
  }

  #onResponse(connection: ClientConnection, response: Response): void {
    if (connection !== this.#connection) return
    const id = response.id
    // No id: a connection-level notice; unknown id: the answer to one of our cancels.
    if (id === undefined || !this.#inFlight.has(id)) return
    const pending = this.#inFlight.get(id)
    this.#inFlight.delete(id)
    if (pending) {
      this.#awaited -= 1
      if (!response.ok) {
        const error = errorFromAnswer(response)
        if (!this.#retryLater(pending, error)) this.#settle(pending, error)
      } else {
        const data = response.data ?? {}
        this.#settle(
          pending,
          isValidOpData(pending.op, data) ? { data } : new ProxyError('PROTOCOL_ERROR', `the broker sent malformed ${pending.op} data`),
        )
      }
    }
    this.#pump()
  }

  /**
   * RATE_LIMITED means the server did not run the request: send it again after
   * backoffDelay from twice the server's retryAfter (equal jitter: in [retryAfter, 2 x
   * retryAfter] on the first retry, doubling after; never less than retryAfter), while
   * the attempts, the wait cap and the request's own deadline allow.
   */
  #retryLater(pending: Pending, error: ProxyError): boolean {
    if (error.code !== 'RATE_LIMITED' || pending.rateLimitRetries >= RATE_LIMIT_RETRIES) return false
    const retryAfterMs = (error.retryAfter ?? 0) * 1000
    if (retryAfterMs > MAX_RATE_LIMIT_WAIT_MS) return false
    const jittered = backoffDelay(pending.rateLimitRetries, { baseMs: 2 * Math.max(retryAfterMs, 10), maxMs: MAX_RATE_LIMIT_WAIT_MS })
    const waitMs = Math.max(retryAfterMs, jittered)
    if (performance.now() + waitMs >= pending.deadline) return false
    pending.rateLimitRetries += 1
    pending.sentOn = undefined
    this.#retrying.add(pending)
    pending.retryTimer = setTimeout(() => {
      pending.retryTimer = undefined
      if (!this.#retrying.delete(pending) || pending.settled || this.#closed) return
      this.#queue.push(pending)
      this.#pump()
    }, waitMs)
    return true
  }

  #onClose(connection: ClientConnection, error: ProxyError): void {
    if (connection !== this.#connection) return
    this.#connection = undefined
    const dropped = [...this.#inFlight.values()]
    this.#inFlight = new Map()
    this.#awaited = 0
    for (const pending of dropped) if (pending) this.#settle(pending, new ProxyError(error.code, `${error.message} before answering ${pending.op}`))
    // Queued requests never reached the server: they go out on a new connection.
    this.#pump()
  }

  // ---- connecting -----------------------------------------------------------------

  async #connect(): Promise<void> {
    this.#connecting = true
    let lastError: ProxyError | undefined
    let attempts = 0
    try {
      for (let attempt = 0; attempt < this.#connectAttempts; attempt++) {
        if (attempt > 0) await delay(backoffDelay(attempt - 1, { baseMs: this.#reconnectBaseDelayMs }))
        if (this.#closed || this.#queue.length === 0) return
        attempts++
        const connection = new ClientConnection({
          socketPath: this.socketPath,
          auth: this.#auth,
          events: {
            onResponse: (c, response) => this.#onResponse(c, response),
            onClose: (c, error) => this.#onClose(c, error),
          },
          ...(this.#handshakeTimeoutMs === undefined ? {} : { handshakeTimeoutMs: this.#handshakeTimeoutMs }),
        })
        this.#connection = connection
        try {
          await connection.ready
        } catch (error) {
          if (this.#connection === connection) this.#connection = undefined
          lastError = error instanceof ProxyError ? error : new ProxyError('CONNECTION_FAILED', 'connection failed', { cause: error })
          if (lastError.code !== 'CONNECTION_FAILED') break
          continue
        }
        if (this.#connection !== connection) return // closed meanwhile
        this.#connecting = false
        this.#pump()
        return
      }
    } finally {
      this.#connecting = false
    }
    if (lastError === undefined) return
    const error =
      lastError.code === 'CONNECTION_FAILED'
        ? new ProxyError('CONNECTION_FAILED', `${lastError.message}; gave up after ${attempts} attempt${attempts === 1 ? '' : 's'}`, {
            cause: lastError,
          })
        : lastError
    this.#failQueue(error)
  }

  #failQueue(error: ProxyError): void {
    const queued = this.#queue
    this.#queue = []
    for (const pending of queued) this.#settle(pending, error)
    this.#updateIdle()
  }

  // ---- idle -------------------------------------------------------------------------

  /** Keep the process alive and the socket open only while something is pending. */
  #updateIdle(): void {
    const connection = this.#connection
    const busy = this.#queue.length > 0 || this.#awaited > 0 || this.#retrying.size > 0
    if (connection === undefined || connection.state !== 'READY') {
      clearTimeout(this.#idleTimer)
      this.#idleTimer = undefined
      return
    }
    connection.setKeepAlive(busy)
    if (busy) {
      clearTimeout(this.#idleTimer)
      this.#idleTimer = undefined
    } else if (this.#idleTimer === undefined) {
      this.#idleTimer = setTimeout(() => {
        this.#idleTimer = undefined
        if (this.#connection !== connection) return
        this.#connection = undefined
        this.#inFlight = new Map()
        this.#awaited = 0
        connection.close()
      }, this.#idleTimeoutMs)
      this.#idleTimer.unref()
    }
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
