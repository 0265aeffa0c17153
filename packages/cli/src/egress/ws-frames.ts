// WebSocket frames after an injected upgrade: text frames are rewritten so a
// placeholder the client sends reaches the upstream as the secret, and a secret the
// upstream echoes reaches the client as the placeholder. Other frames pass through
// byte for byte, streamed. Compression is switched off on such connections
// (the upgrade request loses Sec-WebSocket-Extensions), so text frames are plain.
import { Transform, type TransformCallback } from 'node:stream'

/** A text frame larger than this is not rewritten: the connection is closed instead (fail closed). */
export const MAX_REWRITTEN_WS_FRAME_BYTES = 16 * 1024 * 1024

const OPCODE_CONTINUATION = 0x0
const OPCODE_TEXT = 0x1

type State = 'READ_HEADER' | 'READ_TEXT_PAYLOAD' | 'PASS_PAYLOAD'

/** Frame bytes for `payload` with `first` byte (FIN/RSV/opcode), masked with `mask` when given. */
function encodeFrame(first: number, payload: Buffer, mask: Buffer | null): Buffer {
  const length = payload.length
  const extra = length < 126 ? 0 : length < 65_536 ? 2 : 8
  const header = Buffer.alloc(2 + extra + (mask === null ? 0 : 4))
  header[0] = first
  const maskBit = mask === null ? 0 : 0x80
  if (extra === 0) header[1] = maskBit | length
  else if (extra === 2) {
    header[1] = maskBit | 126
    header.writeUInt16BE(length, 2)
  } else {
    header[1] = maskBit | 127
    header.writeBigUInt64BE(BigInt(length), 2)
  }
  if (mask === null) return Buffer.concat([header, payload])
  mask.copy(header, 2 + extra)
  const masked = Buffer.allocUnsafe(length)
  for (let i = 0; i < length; i++) masked[i] = (payload[i] ?? 0) ^ (mask[i & 3] ?? 0)
  return Buffer.concat([header, masked])
}

function unmask(payload: Buffer, mask: Buffer): Buffer {
  const out = Buffer.allocUnsafe(payload.length)
  for (let i = 0; i < payload.length; i++) out[i] = (payload[i] ?? 0) ^ (mask[i & 3] ?? 0)
  return out
}

export interface TextRewrite {
  /** The rewritten text payload, or an Error to close the connection (e.g. a foreign placeholder). */
  (payload: Buffer): Buffer | Error
}

/**
 * A Transform over one direction of a WebSocket connection. Text frames (and the
 * continuations of a text message) are buffered one frame at a time, rewritten and
 * re-encoded (same mask key); everything else streams through untouched.
 */
export class WsTextRewriter extends Transform {
  readonly #rewrite: TextRewrite
  #state: State = 'READ_HEADER'
  #buffer: Buffer = Buffer.alloc(0)
  /** Chunks of a text frame still short of its length: joined once, when the frame is complete (no quadratic copying). */
  #pending: Buffer[] = []
  #pendingBytes = 0
  #inText = false
  #first = 0
  #mask: Buffer | null = null
  #remaining = 0

  constructor(rewrite: TextRewrite) {
    super()
    this.#rewrite = rewrite
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#pending.push(chunk)
    this.#pendingBytes += chunk.length
    if (this.#state === 'READ_TEXT_PAYLOAD' && this.#buffer.length + this.#pendingBytes < this.#remaining) {
      callback()
      return
    }
    this.#buffer =
      this.#buffer.length === 0 && this.#pending.length === 1 ? chunk : Buffer.concat([this.#buffer, ...this.#pending], this.#buffer.length + this.#pendingBytes)
    this.#pending = []
    this.#pendingBytes = 0
    try {
      this.#drain()
    } catch (error) {
      callback(error as Error)
      return
    }
    callback()
  }

  #drain(): void {
    for (;;) {
      if (this.#state === 'PASS_PAYLOAD') {
        if (this.#buffer.length === 0) return
        const take = Math.min(this.#remaining, this.#buffer.length)
        this.push(this.#buffer.subarray(0, take))
        this.#buffer = this.#buffer.subarray(take)
        this.#remaining -= take
        if (this.#remaining === 0) this.#state = 'READ_HEADER'
        continue
      }
      if (this.#state === 'READ_TEXT_PAYLOAD') {
        if (this.#buffer.length < this.#remaining) return
        const raw = this.#buffer.subarray(0, this.#remaining)
        this.#buffer = this.#buffer.subarray(this.#remaining)
        const payload = this.#mask === null ? raw : unmask(raw, this.#mask)
        const rewritten = this.#rewrite(payload)
        if (rewritten instanceof Error) throw rewritten
        this.push(encodeFrame(this.#first, rewritten, this.#mask))
        this.#state = 'READ_HEADER'
        continue
      }
      // READ_HEADER: 2 bytes, then the extended length and the mask key.
      if (this.#buffer.length < 2) return
      const first = this.#buffer[0] ?? 0
      const second = this.#buffer[1] ?? 0
      const masked = (second & 0x80) !== 0
      const length7 = second & 0x7f
      const extra = length7 === 126 ? 2 : length7 === 127 ? 8 : 0
      const headerLength = 2 + extra + (masked ? 4 : 0)
      if (this.#buffer.length < headerLength) return
      const length = extra === 0 ? length7 : extra === 2 ? this.#buffer.readUInt16BE(2) : Number(this.#buffer.readBigUInt64BE(2))
      const opcode = first & 0x0f
      const fin = (first & 0x80) !== 0
      const compressed = (first & 0x40) !== 0
      // Control frames (opcode >= 8) may arrive between fragments and do not change the message kind.
      const text = opcode === OPCODE_TEXT || (opcode === OPCODE_CONTINUATION && this.#inText)
      if (opcode === OPCODE_TEXT || opcode === OPCODE_CONTINUATION || opcode === 0x2) this.#inText = text && !fin
      if (text && compressed) throw new Error('compressed WebSocket text frame on an injected connection')
      if (text && length > MAX_REWRITTEN_WS_FRAME_BYTES) throw new Error('WebSocket text frame too large to rewrite')
      if (text) {
        this.#first = first
        this.#mask = masked ? Buffer.from(this.#buffer.subarray(2 + extra, headerLength)) : null
        this.#remaining = length
        this.#buffer = this.#buffer.subarray(headerLength)
        this.#state = 'READ_TEXT_PAYLOAD'
        continue
      }
      // Header and payload go out together (one write when the payload is already here).
      this.#remaining = headerLength + length
      this.#state = 'PASS_PAYLOAD'
    }
  }
}
