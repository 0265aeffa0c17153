import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import {
  decodeFrameBody,
  encodeFrame,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  FrameError,
  MAX_FRAME_BYTES_V1,
  maxFrameBytesFor,
} from '../src/protocol/frame.js'

const hex = (h: string) => Buffer.from(h.replace(/\s+/g, ''), 'hex')

function frameError(fn: () => unknown): FrameError {
  try {
    fn()
  } catch (error) {
    if (error instanceof FrameError) return error
    throw error
  }
  throw new Error('expected FrameError')
}

describe('FrameDecoder', () => {
  test('decodes a frame split across writes', () => {
    const d = new FrameDecoder()
    expect(d.push(hex('00000002'))).toEqual([])
    expect(d.push(hex('7b7d'))).toEqual([{}])
    expect(d.bufferedBytes).toBe(0)
  })

  test('decodes two frames in one chunk and keeps the start of a third', () => {
    const d = new FrameDecoder()
    // {"a":1} {} and the first 2 bytes of a header
    expect(d.push(hex('00000007 7b2261223a317d 00000002 7b7d 0000'))).toEqual([{ a: 1 }, {}])
    expect(d.bufferedBytes).toBe(2)
    expect(d.hasPartialFrame).toBe(true)
    expect(d.push(hex('0002 7b7d'))).toEqual([{}])
    expect(d.hasPartialFrame).toBe(false)
  })

  test('a header split byte by byte', () => {
    const d = new FrameDecoder()
    for (const b of ['00', '00', '00']) expect(d.push(hex(b))).toEqual([])
    expect(d.push(hex('07'))).toEqual([])
    expect(d.hasPartialFrame).toBe(true)
    expect(d.push(hex('7b2261223a317d'))).toEqual([{ a: 1 }])
  })

  test('rejects an oversized declared length from the header alone', () => {
    const d = new FrameDecoder({ maxFrameBytes: MAX_FRAME_BYTES_V1 })
    expect(frameError(() => d.push(hex('00010001'))).reason).toBe('FRAME_TOO_LARGE')
    expect(d.bufferedBytes).toBe(0)
  })

  test('the v2 limit is exactly 4 MiB: 0x00400000 is accepted, 0x00400001 is not', () => {
    const ok = new FrameDecoder()
    expect(ok.push(hex('00400000'))).toEqual([])
    expect(ok.hasPartialFrame).toBe(true)
    expect(frameError(() => new FrameDecoder().push(hex('00400001'))).reason).toBe('FRAME_TOO_LARGE')
    expect(maxFrameBytesFor(1)).toBe(65_536)
    expect(maxFrameBytesFor(2)).toBe(4_194_304)
    expect(maxFrameBytesFor(3)).toBe(4_194_304)
  })

  test.each([
    ['EMPTY_FRAME', '00000000'],
    ['INVALID_UTF8', '00000003 22ff22'],
    ['INVALID_JSON', '00000002 7b7b'],
    ['NOT_AN_OBJECT', '00000002 5b5d'],
    ['NOT_AN_OBJECT', '00000004 6e756c6c'],
    ['NOT_AN_OBJECT', '00000001 31'],
    ['INVALID_JSON', '00000005 efbbbf7b7d'], // a UTF-8 BOM is not JSON
  ])('%s: %s', (reason, bytes) => {
    const d = new FrameDecoder()
    expect(frameError(() => d.push(hex(bytes))).reason).toBe(reason)
    // The decoder is dead afterwards: every push gives the same error.
    expect(frameError(() => d.push(hex('00000002 7b7d'))).reason).toBe(reason)
  })

  test('multi-byte UTF-8 split across chunks', () => {
    const frame = encodeFrame({ name: 'café ☕' })
    const d = new FrameDecoder()
    const out = [...frame].flatMap((byte) => d.push(Buffer.from([byte])))
    expect(out).toEqual([{ name: 'café ☕' }])
  })

  test('__proto__ in a frame stays plain data', () => {
    const [frame] = new FrameDecoder().push(encodeFrameRaw('{"__proto__":{"polluted":1}}'))
    expect(Object.getPrototypeOf(frame)).toBe(Object.prototype)
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined()
  })

  test('one byte at a time keeps few buffers (small leftovers are coalesced)', () => {
    const frame = encodeFrame({ data: 'x'.repeat(200_000) })
    const d = new FrameDecoder()
    for (let i = 0; i < frame.length - 1; i++) d.push(frame.subarray(i, i + 1))
    expect(d.bufferedBytes).toBe(frame.length - 1 - FRAME_HEADER_BYTES) // the header is consumed once read
    expect(d.bufferedChunks).toBeLessThanOrEqual(4)
    expect(d.push(frame.subarray(frame.length - 1))).toEqual([{ data: 'x'.repeat(200_000) }])
  })

  test('does not keep a reference to the caller after frames are returned', () => {
    const d = new FrameDecoder()
    d.push(encodeFrame({ a: 1 }))
    expect(d.bufferedChunks).toBe(0)
  })
})

describe('encodeFrame', () => {
  test('encodes the length big-endian', () => {
    expect(encodeFrame({ a: 1 }).toString('hex')).toBe('000000077b2261223a317d')
  })

  test('the length counts UTF-8 bytes, not characters', () => {
    expect(encodeFrame({ e: 'é' }).toString('hex')).toBe('0000000a' + Buffer.from('{"e":"é"}').toString('hex'))
  })

  test('refuses a body over the limit and non-objects', () => {
    expect(frameError(() => encodeFrame({ s: 'x'.repeat(MAX_FRAME_BYTES_V1) }, MAX_FRAME_BYTES_V1)).reason).toBe('FRAME_TOO_LARGE')
    expect(frameError(() => encodeFrame([1, 2])).reason).toBe('NOT_AN_OBJECT')
  })

  test('decodeFrameBody is the inverse of the body part', () => {
    expect(decodeFrameBody(encodeFrame({ a: [1, 'b'] }).subarray(FRAME_HEADER_BYTES))).toEqual({ a: [1, 'b'] })
  })
})

function encodeFrameRaw(json: string): Buffer {
  const body = Buffer.from(json, 'utf8')
  const header = Buffer.alloc(4)
  header.writeUInt32BE(body.length)
  return Buffer.concat([header, body])
}

// ---- properties ------------------------------------------------------------------

const jsonObject = fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 6 })

/** Cut `bytes` at the given (sorted, deduplicated) offsets. */
function split(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)
  const parts: Buffer[] = []
  let start = 0
  for (const point of [...points, bytes.length]) {
    if (point > start) parts.push(bytes.subarray(start, point))
    start = Math.max(start, point)
  }
  return parts
}

describe('properties', () => {
  test('any chunking of any valid frame sequence decodes identically', () => {
    fc.assert(
      fc.property(fc.array(jsonObject, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 40 }), (messages, cuts) => {
        const stream = Buffer.concat(messages.map((m) => encodeFrame(m)))
        const d = new FrameDecoder()
        const out = split(stream, cuts).flatMap((part) => d.push(part))
        // JSON round trip normalizes -0 and the like, exactly as the wire does.
        expect(out).toEqual(messages.map((m) => JSON.parse(JSON.stringify(m)) as unknown))
        expect(d.bufferedBytes).toBe(0)
      }),
      { numRuns: 300 },
    )
  })

  test('random bytes end in a FrameError or more frames, never another throw, and the buffer stays bounded', () => {
    const maxFrameBytes = 256
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 20 }), fc.boolean(), (chunks, validPrefix) => {
        const d = new FrameDecoder({ maxFrameBytes })
        const all = validPrefix ? [new Uint8Array(encodeFrame({ ok: true })), ...chunks] : chunks
        for (const chunk of all) {
          try {
            const frames = d.push(Buffer.from(chunk))
            for (const frame of frames) expect(typeof frame).toBe('object')
          } catch (error) {
            expect(error).toBeInstanceOf(FrameError)
            return
          }
          expect(d.bufferedBytes).toBeLessThanOrEqual(FRAME_HEADER_BYTES + maxFrameBytes + chunk.length)
          expect(d.bufferedBytes).toBeLessThan(Math.max(FRAME_HEADER_BYTES, maxFrameBytes))
        }
      }),
      { numRuns: 500 },
    )
  })

  test('random chunkings of random bytes reach the same verdict as one-shot decoding', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.array(fc.nat(), { maxLength: 30 }), (bytes, cuts) => {
        const outcome = (parts: Buffer[]) => {
          const d = new FrameDecoder({ maxFrameBytes: 128 })
          const frames: unknown[] = []
          try {
            for (const part of parts) frames.push(...d.push(part))
            return { frames, error: undefined }
          } catch (error) {
            // Frames decoded in the same push as the error are dropped with the connection.
            return { frames: undefined, error: (error as FrameError).reason }
          }
        }
        const buffer = Buffer.from(bytes)
        expect(outcome(split(buffer, cuts))).toEqual(outcome([buffer]))
      }),
      { numRuns: 300 },
    )
  })
})
