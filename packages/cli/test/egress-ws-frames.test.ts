// WebSocket frame rewriting on injected connections: text frames rewritten at any
// chunking, every length encoding, fragments with control frames in between;
// other frames byte for byte; compressed text refused.
import { Readable } from 'node:stream'
import { describe, expect, test, vi } from 'vitest'
import { WsTextRewriter, type TextRewrite } from '../src/egress/ws-frames.js'

function frame(first: number, payload: Buffer, mask: Buffer | null): Buffer {
  const length = payload.length
  const extra = length < 126 ? Buffer.alloc(0) : length < 65_536 ? Buffer.alloc(2) : Buffer.alloc(8)
  if (extra.length === 2) extra.writeUInt16BE(length)
  if (extra.length === 8) extra.writeBigUInt64BE(BigInt(length))
  const second = (mask === null ? 0 : 0x80) | (extra.length === 0 ? length : extra.length === 2 ? 126 : 127)
  const body = mask === null ? payload : Buffer.from(payload.map((byte, i) => byte ^ (mask[i & 3] ?? 0)))
  return Buffer.concat([Buffer.from([first, second]), extra, mask ?? Buffer.alloc(0), body])
}

const MASK = Buffer.from([0x11, 0x22, 0x33, 0x44])
const upper = (payload: Buffer): Buffer => Buffer.from(payload.toString().replaceAll('ph', 'SECRET'))

async function run(chunks: Buffer[], rewrite: TextRewrite = upper): Promise<Buffer> {
  const out: Buffer[] = []
  for await (const chunk of Readable.from(chunks).pipe(new WsTextRewriter(rewrite))) out.push(chunk as Buffer)
  return Buffer.concat(out)
}

describe('WsTextRewriter', () => {
  test('a masked text frame is rewritten and re-masked, at every split point', async () => {
    const input = Buffer.concat([frame(0x81, Buffer.from('token=ph;'), MASK), frame(0x82, Buffer.from('ph binary'), MASK)])
    const expected = Buffer.concat([frame(0x81, Buffer.from('token=SECRET;'), MASK), frame(0x82, Buffer.from('ph binary'), MASK)])
    for (let cut = 0; cut <= input.length; cut++) {
      expect(await run([input.subarray(0, cut), input.subarray(cut)])).toEqual(expected)
    }
  })

  test('16-bit and 64-bit lengths, unmasked (server) frames', async () => {
    const medium = Buffer.from(`${'a'.repeat(300)}ph`)
    const large = Buffer.from(`ph${'b'.repeat(70_000)}`)
    const out = await run([frame(0x81, medium, null), frame(0x81, large, null)])
    expect(out).toEqual(Buffer.concat([frame(0x81, upper(medium), null), frame(0x81, upper(large), null)]))
  })

  test('a fragmented text message with a ping in between: every text fragment rewritten, the ping untouched', async () => {
    const ping = frame(0x89, Buffer.from('ph-ping'), MASK)
    const input = Buffer.concat([frame(0x01, Buffer.from('ph 1'), MASK), ping, frame(0x80, Buffer.from('ph 2'), MASK), frame(0x82, Buffer.from('ph 3'), MASK)])
    const out = await run([input])
    expect(out).toEqual(Buffer.concat([frame(0x01, Buffer.from('SECRET 1'), MASK), ping, frame(0x80, Buffer.from('SECRET 2'), MASK), frame(0x82, Buffer.from('ph 3'), MASK)]))
  })

  test('a large text frame arriving in many chunks is joined once, not copied again for every chunk', async () => {
    const payload = Buffer.alloc(4 * 1024 * 1024, 'a')
    const input = frame(0x81, payload, MASK)
    const chunks: Buffer[] = []
    for (let at = 0; at < input.length; at += 16 * 1024) chunks.push(input.subarray(at, at + 16 * 1024))
    // Bytes copied by Buffer.concat: quadratic re-joining of 256 chunks copies about 512 MiB.
    let copied = 0
    const concat = Buffer.concat.bind(Buffer)
    const spy = vi.spyOn(Buffer, 'concat').mockImplementation((list, totalLength) => {
      const joined = concat(list, totalLength)
      copied += joined.length
      return joined
    })
    try {
      const out = await run(chunks)
      expect(out.length).toBe(input.length)
    } finally {
      spy.mockRestore()
    }
    expect(copied).toBeLessThan(4 * input.length)
  })

  test('a compressed text frame, or a refusal from the rewrite, fails the stream', async () => {
    await expect(run([frame(0xc1, Buffer.from('x'), MASK)])).rejects.toThrow(/compressed/)
    await expect(run([frame(0x81, Buffer.from('x'), MASK)], () => new Error('foreign-placeholder'))).rejects.toThrow('foreign-placeholder')
  })
})
