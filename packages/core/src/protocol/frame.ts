// Bytes <-> frames. A frame is a 4-byte unsigned big-endian length N, then N bytes
// of UTF-8 JSON holding one object. Normative spec: dev-docs/protocol.md "Framing".

export const FRAME_HEADER_BYTES = 4
/** Largest frame body a v1 peer may send or receive. */
export const MAX_FRAME_BYTES_V1 = 65_536
/** Largest frame body in v2 and v3, and before the handshake has settled. */
export const MAX_FRAME_BYTES = 4_194_304
/** A frame that has started must complete within this time. */
export const PARTIAL_FRAME_TIMEOUT_MS = 5_000
/**
 * Leftover chunks smaller than this are copied into a shared staging buffer, so a
 * peer writing one byte at a time cannot make us hold millions of tiny Buffer objects.
 */
export const FRAME_COALESCE_BELOW_BYTES = 4_096
/** Size of one staging buffer used for coalescing small leftovers. */
export const FRAME_STAGING_BYTES = 65_536

export function maxFrameBytesFor(version: number): number {
  return version <= 1 ? MAX_FRAME_BYTES_V1 : MAX_FRAME_BYTES
}

export type FrameErrorReason = 'FRAME_TOO_LARGE' | 'EMPTY_FRAME' | 'INVALID_UTF8' | 'INVALID_JSON' | 'NOT_AN_OBJECT'

export class FrameError extends Error {
  override name = 'FrameError'
  constructor(
    readonly reason: FrameErrorReason,
    message: string,
  ) {
    super(message)
  }
}

/** Encode one message. Throws FrameError('FRAME_TOO_LARGE') when the body exceeds maxFrameBytes. */
export function encodeFrame(message: object, maxFrameBytes: number = MAX_FRAME_BYTES): Buffer {
  // The decoder accepts only objects; refusing arrays here keeps both sides symmetric.
  if (message === null || typeof message !== 'object' || Array.isArray(message)) {
    throw new FrameError('NOT_AN_OBJECT', 'frame message must be a JSON object')
  }
  const body = Buffer.from(JSON.stringify(message), 'utf8')
  if (body.length > maxFrameBytes) {
    throw new FrameError('FRAME_TOO_LARGE', `frame body of ${body.length} bytes exceeds ${maxFrameBytes}`)
  }
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + body.length)
  frame.writeUInt32BE(body.length, 0)
  body.copy(frame, FRAME_HEADER_BYTES)
  return frame
}

// ignoreBOM keeps a byte-order mark in the text, so JSON.parse rejects it: JSON on the wire has no BOM.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
const EMPTY = Buffer.alloc(0)

/** Parse one frame body. Throws FrameError. */
export function decodeFrameBody(body: Buffer): Record<string, unknown> {
  let text: string
  try {
    text = utf8.decode(body)
  } catch {
    throw new FrameError('INVALID_UTF8', 'frame body is not valid UTF-8')
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    throw new FrameError('INVALID_JSON', 'frame body is not valid JSON')
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new FrameError('NOT_AN_OBJECT', 'frame body is not a JSON object')
  }
  return value as Record<string, unknown>
}

type DecoderState = 'READ_HEADER' | 'READ_BODY'

/**
 * Incremental decoder. Chunks are kept as they arrive and each frame is assembled
 * once, so cost is linear in the bytes received. The declared length is checked the
 * moment the header is complete, before any body byte is kept for that frame.
 * Small leftovers are coalesced into staging buffers (see FRAME_COALESCE_BELOW_BYTES).
 * After an error the decoder is dead: every later push throws the same error.
 */
export class FrameDecoder {
  #chunks: Buffer[] = []
  #head = 0
  #buffered = 0
  #state: DecoderState = 'READ_HEADER'
  #bodyBytes = 0
  #failed: FrameError | undefined
  #maxFrameBytes: number
  #staging: Buffer | undefined
  #stagingUsed = 0

  constructor(options: { maxFrameBytes?: number } = {}) {
    this.#maxFrameBytes = options.maxFrameBytes ?? MAX_FRAME_BYTES
  }

  /** Change the limit, e.g. to 64 KiB once a v1 handshake has settled. */
  setMaxFrameBytes(maxFrameBytes: number): void {
    this.#maxFrameBytes = maxFrameBytes
  }

  get maxFrameBytes(): number {
    return this.#maxFrameBytes
  }

  /** Bytes received but not yet returned as frames. */
  get bufferedBytes(): number {
    return this.#buffered
  }

  /** Buffers currently held (diagnostics: stays small however the bytes were chunked). */
  get bufferedChunks(): number {
    return this.#chunks.length - this.#head
  }

  /** True while part of a frame has arrived and the rest has not. */
  get hasPartialFrame(): boolean {
    return this.#buffered > 0 || this.#state === 'READ_BODY'
  }

  push(chunk: Buffer): Record<string, unknown>[] {
    if (this.#failed) throw this.#failed
    if (chunk.length > 0) {
      this.#chunks.push(chunk)
      this.#buffered += chunk.length
    }
    const frames: Record<string, unknown>[] = []
    try {
      for (;;) {
        if (this.#state === 'READ_HEADER') {
          if (this.#buffered < FRAME_HEADER_BYTES) break
          const length = this.#take(FRAME_HEADER_BYTES).readUInt32BE(0)
          if (length === 0) throw new FrameError('EMPTY_FRAME', 'frame length is 0')
          if (length > this.#maxFrameBytes) {
            throw new FrameError('FRAME_TOO_LARGE', `declared frame length ${length} exceeds ${this.#maxFrameBytes}`)
          }
          this.#bodyBytes = length
          this.#state = 'READ_BODY'
        }
        if (this.#buffered < this.#bodyBytes) break
        const body = this.#take(this.#bodyBytes)
        this.#state = 'READ_HEADER'
        this.#bodyBytes = 0
        frames.push(decodeFrameBody(body))
      }
    } catch (error) {
      this.#failed = error instanceof FrameError ? error : new FrameError('INVALID_JSON', String(error))
      this.#chunks = []
      this.#head = 0
      this.#buffered = 0
      this.#staging = undefined
      throw this.#failed
    }
    if (this.#buffered === 0) this.#stagingUsed = 0
    else this.#coalesceTail()
    return frames
  }

  /** Copy a small leftover last chunk into the staging buffer, extending the previous staged view when adjacent. */
  #coalesceTail(): void {
    const last = this.#chunks.length - 1
    const chunk = this.#chunks[last]
    if (chunk === undefined || last < this.#head || chunk.length >= FRAME_COALESCE_BELOW_BYTES) return
    let staging = this.#staging
    if (staging !== undefined && chunk.buffer === staging.buffer) return
    if (staging === undefined || staging.length - this.#stagingUsed < chunk.length) {
      staging = Buffer.allocUnsafeSlow(FRAME_STAGING_BYTES)
      this.#staging = staging
      this.#stagingUsed = 0
    }
    const start = this.#stagingUsed
    chunk.copy(staging, start)
    this.#stagingUsed += chunk.length
    const prev = last > this.#head ? this.#chunks[last - 1] : undefined
    if (prev !== undefined && prev.buffer === staging.buffer && prev.byteOffset + prev.length === staging.byteOffset + start) {
      this.#chunks[last - 1] = staging.subarray(prev.byteOffset - staging.byteOffset, this.#stagingUsed)
      this.#chunks.pop()
    } else {
      this.#chunks[last] = staging.subarray(start, this.#stagingUsed)
    }
  }

  /** Remove exactly n buffered bytes (n <= buffered), copying only when they span chunks. */
  #take(n: number): Buffer {
    this.#buffered -= n
    const first = this.#chunks[this.#head]
    if (first !== undefined && first.length >= n) {
      if (first.length === n) this.#dropHead()
      else this.#chunks[this.#head] = first.subarray(n)
      return first.subarray(0, n)
    }
    const out = Buffer.allocUnsafe(n)
    let offset = 0
    while (offset < n) {
      const chunk = this.#chunks[this.#head]
      if (chunk === undefined) throw new Error('FrameDecoder: buffer accounting broken')
      const need = n - offset
      if (chunk.length <= need) {
        chunk.copy(out, offset)
        offset += chunk.length
        this.#dropHead()
      } else {
        chunk.copy(out, offset, 0, need)
        this.#chunks[this.#head] = chunk.subarray(need)
        offset += need
      }
    }
    return out
  }

  // Advancing an index instead of Array.shift keeps many chunks linear; compacting only
  // once half the array is dead keeps the compaction copies amortized O(1) per chunk.
  #dropHead(): void {
    this.#chunks[this.#head] = EMPTY
    this.#head++
    if (this.#head === this.#chunks.length) {
      this.#chunks = []
      this.#head = 0
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#head)
      this.#head = 0
    }
  }
}
