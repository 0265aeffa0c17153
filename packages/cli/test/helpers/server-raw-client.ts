// The one raw-frame client of the server and security tests: a deliberately dumb client
// over a real Unix socket, every received byte and frame recorded (for byte scans).
import { connect, type Socket } from 'node:net'
import {
  computeClientProof,
  computeServerProof,
  encodeFrame,
  FrameDecoder,
  generateNonce,
} from '@credproxy/core'

export type Frame = Record<string, unknown>

export class RawClient {
  readonly received: Buffer[] = []
  /** Every frame received, in order (next() and answerTo() do not remove them). */
  readonly frames: Frame[] = []
  closed = false
  #waiters: Array<() => void> = []
  #decoder = new FrameDecoder()
  #nextId = 0

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.received.push(chunk)
      try {
        this.frames.push(...this.#decoder.push(chunk))
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

  /** allowHalfOpen: keep our side open after the server's FIN (to see the server destroy it). */
  static connect(path: string, options: { allowHalfOpen?: boolean } = {}): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ path, allowHalfOpen: options.allowHalfOpen ?? false })
      socket.once('connect', () => resolve(new RawClient(socket)))
      socket.once('error', reject)
    })
  }

  /** Every byte the server sent (for secret scans). */
  receivedBytes(): Buffer {
    return Buffer.concat(this.received)
  }

  /** Every byte the server sent, as one UTF-8 string (for secret scans). */
  receivedText(): string {
    return this.receivedBytes().toString('utf8')
  }

  send(message: object): void {
    this.socket.write(encodeFrame(message))
  }

  sendRaw(bytes: Buffer): void {
    this.socket.write(bytes)
  }

  /** Resolves when cond() holds; re-checked on every received chunk and on close. */
  async until<T>(cond: () => T | undefined | false): Promise<T> {
    for (;;) {
      const v = cond()
      if (v !== undefined && v !== false) return v
      if (this.closed) throw new Error('connection closed while waiting')
      await new Promise<void>((resolve) => this.#waiters.push(resolve))
    }
  }

  /** The next frame not yet taken by next() / the frame answering id. */
  #taken = 0
  next(): Promise<Frame> {
    return this.until(() => (this.#taken < this.frames.length ? this.frames[this.#taken++] : undefined))
  }

  answerTo(id: string): Promise<Frame> {
    return this.until(() => this.frames.find((f) => f['id'] === id))
  }

  waitClosed(): Promise<void> {
    return new Promise((resolve) => {
      if (this.closed) resolve()
      else this.socket.once('close', () => resolve())
    })
  }

  async request(op: string, payload: object = {}, v = 3): Promise<Frame> {
    const id = `r${this.#nextId++}`
    this.send({ v, id, op, payload })
    return this.answerTo(id)
  }

  /** v3 handshake; returns the finish answer. Verifies the server's proof. */
  async handshakeV3(secret: Buffer, range = { minVersion: 1, maxVersion: 3 }): Promise<Frame> {
    const clientNonce = generateNonce()
    this.send({ v: 3, op: 'handshake', payload: { ...range, clientNonce } })
    const hello = await this.next()
    const data = hello['data'] as { serverNonce: string; serverProof: string } | undefined
    if (hello['ok'] !== true || data === undefined) return hello
    if (computeServerProof(secret, clientNonce, data.serverNonce) !== data.serverProof) {
      throw new Error('server proof does not match')
    }
    this.send({ v: 3, op: 'handshake_finish', payload: { clientProof: computeClientProof(secret, data.serverNonce, clientNonce) } })
    return this.next()
  }

  async handshakeLegacy(token: string | undefined, maxVersion = 2): Promise<Frame> {
    const payload: Record<string, unknown> = { minVersion: 1, maxVersion }
    if (token !== undefined) payload['capabilityToken'] = token
    this.send({ v: maxVersion, op: 'handshake', payload })
    return this.next()
  }

  close(): void {
    this.socket.destroy()
  }

  #wake(): void {
    const w = this.#waiters
    this.#waiters = []
    for (const f of w) f()
  }
}
