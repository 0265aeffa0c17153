import { describe, expect, test } from 'vitest'
import { encodeFrame, FrameDecoder, FrameError, MAX_FRAME_BYTES_V1 } from '../src/protocol/frame.js'

describe('FrameDecoder', () => {
  test('decodes a frame split across writes', () => {
    const d = new FrameDecoder()
    expect(d.push(Buffer.from('00000002', 'hex'))).toEqual([])
    expect(d.push(Buffer.from('7b7d', 'hex'))).toEqual([{}])
    expect(d.bufferedBytes).toBe(0)
  })

  test('rejects an oversized declared length from the header alone', () => {
    const d = new FrameDecoder({ maxFrameBytes: MAX_FRAME_BYTES_V1 })
    expect(() => d.push(Buffer.from('00010001', 'hex'))).toThrow(FrameError)
    expect(d.bufferedBytes).toBe(0)
  })

  test('encodes the length big-endian', () => {
    expect(encodeFrame({ a: 1 }).toString('hex')).toBe('000000077b2261223a317d')
  })
})
