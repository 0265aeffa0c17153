// One socket's life: connect, handshake, then frames in and out until it closes.
// Every socket event is ignored once the connection is CLOSED, so a torn-down
// socket can never touch the client's next connection.
import { createConnection, type Socket } from 'node:net'
import { ProxyError } from '../protocol/errors.js'
import { encodeFrame, FrameDecoder, FrameError, maxFrameBytesFor, PARTIAL_FRAME_TIMEOUT_MS } from '../protocol/frame.js'
import type { Response } from '../protocol/messages.js'
import { MAX_LEGACY_PROTOCOL_VERSION } from '../protocol/versions.js'
import { asFinishData, asHandshakeData, asResponse } from './answer-checks.js'
import { buildFinish, buildHello, serverProofValid, V3_PROTOCOL_VERSION, type ClientAuth } from './client-auth.js'
import { errorFromAnswer } from './server-message.js'

/** The client gives up on a handshake that has not completed by then (the server's own deadline is 2 s). */
export const CLIENT_HANDSHAKE_TIMEOUT_MS = 5_000

export type ConnectionState = 'CONNECTING' | 'HANDSHAKING' | 'READY' | 'CLOSED'

type HandshakeStep = 'AWAIT_HELLO' | 'AWAIT_FINISH'

export interface ConnectionEvents {
  /** A response frame after the handshake. */
  onResponse(connection: ClientConnection, response: Response): void
  /** The connection closed after it was READY (not called for a failed handshake: `ready` rejects instead). */
  onClose(connection: ClientConnection, error: ProxyError): void
}

export interface ConnectionOptions {
  socketPath: string
  auth: ClientAuth
  events: ConnectionEvents
  handshakeTimeoutMs?: number
}

export class ClientConnection {
  #state: ConnectionState = 'CONNECTING'
  #step: HandshakeStep = 'AWAIT_HELLO'
  #version = 0
  #session: string | undefined
  readonly #socket: Socket
  readonly #decoder = new FrameDecoder()
  readonly #options: ConnectionOptions
  #clientNonce: string | undefined
  #handshakeTimer: NodeJS.Timeout | undefined
  #partialTimer: NodeJS.Timeout | undefined
  #resolveReady!: () => void
  #rejectReady!: (error: ProxyError) => void
  /** Resolves when READY; rejects with a ProxyError (CONNECTION_FAILED is worth retrying, other codes are not). */
  readonly ready: Promise<void>

  constructor(options: ConnectionOptions) {
    this.#options = options
    this.ready = new Promise<void>((resolve, reject) => {
      this.#resolveReady = resolve
      this.#rejectReady = reject
    })
    // The client awaits `ready` only when it is the current connection; never leave it unhandled.
    this.ready.catch(() => undefined)
    const timeoutMs = options.handshakeTimeoutMs ?? CLIENT_HANDSHAKE_TIMEOUT_MS
    this.#handshakeTimer = setTimeout(() => {
      this.#fail(new ProxyError('CONNECTION_FAILED', `the broker at ${options.socketPath} did not complete the handshake within ${timeoutMs} ms`))
    }, timeoutMs)
    this.#socket = createConnection({ path: options.socketPath })
    this.#socket.on('connect', () => this.#onConnect())
    this.#socket.on('data', (chunk: Buffer) => this.#onData(chunk))
    this.#socket.on('end', () => this.#fail(this.#droppedError()))
    this.#socket.on('close', () => this.#fail(this.#droppedError()))
    this.#socket.on('error', (error: NodeJS.ErrnoException) => {
      const detail = error.code ?? 'socket error'
      this.#fail(
        this.#state === 'CONNECTING'
          ? new ProxyError('CONNECTION_FAILED', `cannot connect to the credproxy broker at ${options.socketPath} (${detail})`, { cause: error })
          : new ProxyError('CONNECTION_FAILED', `the connection to the credproxy broker at ${options.socketPath} failed (${detail})`, { cause: error }),
      )
    })
  }

  get state(): ConnectionState {
    return this.#state
  }

  /** Negotiated protocol version (0 until READY). */
  get version(): number {
    return this.#version
  }

  /** Session id the v3 server named in handshake_finish. */
  get session(): string | undefined {
    return this.#session
  }

  /** Send one request frame. Throws ProxyError when not READY or when the frame exceeds the version's limit. */
  send(message: Record<string, unknown>): void {
    if (this.#state !== 'READY') throw new ProxyError('CONNECTION_FAILED', 'the broker connection is not open')
    let frame: Buffer
    try {
      frame = encodeFrame(message, maxFrameBytesFor(this.#version))
    } catch (error) {
      if (error instanceof FrameError) {
        throw new ProxyError('INVALID_REQUEST', `the request exceeds the frame limit of protocol v${this.#version}`, { cause: error })
      }
      throw error
    }
    this.#socket.write(frame)
  }

  /** Whether this socket keeps the process alive (false while nothing is pending). */
  setKeepAlive(keep: boolean): void {
    if (keep) this.#socket.ref()
    else this.#socket.unref()
  }

  /** Tear down; events after this are ignored. */
  close(error: ProxyError = new ProxyError('CONNECTION_FAILED', 'the client closed the broker connection')): void {
    this.#fail(error)
  }

  #droppedError(): ProxyError {
    const where = this.#options.socketPath
    return this.#state === 'READY'
      ? new ProxyError('CONNECTION_FAILED', `the broker at ${where} closed the connection`)
      : new ProxyError('CONNECTION_FAILED', `the broker at ${where} closed the connection during the handshake`)
  }

  #onConnect(): void {
    if (this.#state !== 'CONNECTING') return
    this.#state = 'HANDSHAKING'
    const hello = buildHello(this.#options.auth)
    this.#clientNonce = hello.clientNonce
    this.#socket.write(encodeFrame(hello.frame))
  }

  #onData(chunk: Buffer): void {
    if (this.#state === 'CLOSED') return
    let frames: Record<string, unknown>[]
    try {
      frames = this.#decoder.push(chunk)
    } catch (error) {
      const reason = error instanceof FrameError ? error.reason : 'INVALID_FRAME'
      this.#fail(new ProxyError('PROTOCOL_ERROR', `the broker sent an invalid frame (${reason})`, { cause: error }))
      return
    }
    for (const frame of frames) {
      // A frame may have closed the connection (a failed handshake): drop the rest.
      if (this.state === 'CLOSED') return
      this.#onFrame(frame)
    }
    this.#armPartialTimer()
  }

  // A frame the server started must finish within PARTIAL_FRAME_TIMEOUT_MS, as on the server side.
  #armPartialTimer(): void {
    if (this.#state === 'CLOSED') return
    if (!this.#decoder.hasPartialFrame) {
      clearTimeout(this.#partialTimer)
      this.#partialTimer = undefined
    } else if (this.#partialTimer === undefined) {
      this.#partialTimer = setTimeout(() => {
        this.#fail(new ProxyError('PROTOCOL_ERROR', `the broker did not finish a frame within ${PARTIAL_FRAME_TIMEOUT_MS} ms`))
      }, PARTIAL_FRAME_TIMEOUT_MS)
      this.#partialTimer.unref()
    }
  }

  #onFrame(frame: Record<string, unknown>): void {
    const response = asResponse(frame)
    if (response === undefined) {
      this.#fail(new ProxyError('PROTOCOL_ERROR', 'the broker sent a frame that is not a response'))
      return
    }
    if (this.#state === 'READY') this.#options.events.onResponse(this, response)
    else if (this.#state === 'HANDSHAKING') this.#onHandshakeAnswer(response)
    else this.#fail(new ProxyError('PROTOCOL_ERROR', 'the broker spoke before the handshake'))
  }

  #onHandshakeAnswer(answer: Response): void {
    if (!answer.ok) {
      this.#fail(errorFromAnswer(answer))
      return
    }
    const auth = this.#options.auth
    if (this.#step === 'AWAIT_FINISH') {
      const finish = asFinishData(answer.data)
      if (finish === undefined) {
        this.#fail(new ProxyError('PROTOCOL_ERROR', 'the broker sent a malformed handshake_finish answer'))
        return
      }
      this.#session = finish.session
      this.#becomeReady()
      return
    }
    const data = asHandshakeData(answer.data)
    if (data === undefined) {
      this.#fail(
        auth.kind === 'v3'
          ? this.#unverified()
          : new ProxyError('PROTOCOL_ERROR', 'the broker sent a malformed handshake answer'),
      )
      return
    }
    const { version, serverNonce, serverProof } = data
    if (auth.kind === 'legacy') {
      if (version < 1 || version > MAX_LEGACY_PROTOCOL_VERSION) {
        this.#fail(new ProxyError('UNKNOWN_VERSION', `the broker chose protocol v${version}, outside the offered v1..v${MAX_LEGACY_PROTOCOL_VERSION}`))
        return
      }
      this.#version = version
      this.#becomeReady()
      return
    }
    // v3: the proof is checked before anything else leaves this process.
    const clientNonce = this.#clientNonce
    if (
      version !== V3_PROTOCOL_VERSION ||
      serverNonce === undefined ||
      serverProof === undefined ||
      clientNonce === undefined ||
      !serverProofValid(auth.secret, clientNonce, serverNonce, serverProof)
    ) {
      this.#fail(this.#unverified())
      return
    }
    this.#version = version
    this.#step = 'AWAIT_FINISH'
    this.#socket.write(encodeFrame(buildFinish(auth.secret, serverNonce, clientNonce)))
  }

  #unverified(): ProxyError {
    return new ProxyError(
      'SERVER_UNVERIFIED',
      `the listener at ${this.#options.socketPath} could not prove the session secret; nothing was sent to it`,
    )
  }

  #becomeReady(): void {
    clearTimeout(this.#handshakeTimer)
    this.#handshakeTimer = undefined
    this.#decoder.setMaxFrameBytes(maxFrameBytesFor(this.#version))
    this.#state = 'READY'
    this.#resolveReady()
  }

  #fail(error: ProxyError): void {
    if (this.#state === 'CLOSED') return
    const wasReady = this.#state === 'READY'
    this.#state = 'CLOSED'
    clearTimeout(this.#handshakeTimer)
    clearTimeout(this.#partialTimer)
    this.#handshakeTimer = undefined
    this.#partialTimer = undefined
    this.#socket.destroy()
    if (wasReady) this.#options.events.onClose(this, error)
    else this.#rejectReady(error)
  }
}
