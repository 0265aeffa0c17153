// Framing costs (client side and shared code): decoding cost must be linear in the
// bytes received, and encode/decode throughput of typical frames.
// (The get_token round trip against the real server is in the server's bench.)
import { encodeFrame, FrameDecoder } from '@credproxy/core'
import { summarize } from './stats.js'

const CHUNK_BYTES = 1_024
const ROUNDS = 9

function bigFrame(bodyBytes: number): Buffer {
  // A token-like object padded to the wanted size.
  const overhead = encodeFrame({ id: '1', ok: true, data: { key: '' } }).length
  return encodeFrame({ id: '1', ok: true, data: { key: 'x'.repeat(bodyBytes - overhead) } })
}

function chunks(frame: Buffer, size: number): Buffer[] {
  const out: Buffer[] = []
  for (let i = 0; i < frame.length; i += size) out.push(Buffer.from(frame.subarray(i, i + size)))
  return out
}

function decodeChunkedMs(parts: Buffer[]): number {
  const start = process.hrtime.bigint()
  const d = new FrameDecoder()
  let frames = 0
  for (const part of parts) frames += d.push(part).length
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  if (frames !== 1) throw new Error('bench: expected one frame')
  return ms
}

function medianOf(fn: () => number): number {
  fn() // warm-up
  return summarize(Array.from({ length: ROUNDS }, fn)).p50
}

function throughput(label: string, frame: Buffer, count: number): { label: string; mbps: number; fps: number } {
  const message = JSON.parse(frame.subarray(4).toString('utf8')) as object
  const encodeStart = process.hrtime.bigint()
  for (let i = 0; i < count; i++) encodeFrame(message)
  const encodeS = Number(process.hrtime.bigint() - encodeStart) / 1e9
  const stream = Buffer.concat(Array.from({ length: count }, () => frame))
  const parts = chunks(stream, 65_536) // socket-sized reads
  const decodeStart = process.hrtime.bigint()
  const d = new FrameDecoder()
  let n = 0
  for (const part of parts) n += d.push(part).length
  const decodeS = Number(process.hrtime.bigint() - decodeStart) / 1e9
  if (n !== count) throw new Error('bench: frame count mismatch')
  console.log(
    `| ${label} | ${frame.length} | ${Math.round(count / encodeS).toLocaleString('en')} | ${Math.round(count / decodeS).toLocaleString('en')} | ${((stream.length / decodeS) / 1e6).toFixed(0)} |`,
  )
  return { label, mbps: stream.length / decodeS / 1e6, fps: count / decodeS }
}

export async function run(): Promise<void> {
  const oneMiB = chunks(bigFrame(1_048_576), CHUNK_BYTES)
  const fourMiB = chunks(bigFrame(4_194_304), CHUNK_BYTES)
  const small = medianOf(() => decodeChunkedMs(oneMiB))
  const large = medianOf(() => decodeChunkedMs(fourMiB))
  const ratio = large / small
  console.log(`\nDecoding one frame delivered in ${CHUNK_BYTES} B chunks (median of ${ROUNDS}):\n`)
  console.log('| frame | chunks | decode time |')
  console.log('|---|---|---|')
  console.log(`| 1 MiB | ${oneMiB.length} | ${small.toFixed(2)} ms |`)
  console.log(`| 4 MiB | ${fourMiB.length} | ${large.toFixed(2)} ms |`)
  console.log(`\n4 MiB / 1 MiB ratio: ${ratio.toFixed(2)} (target <= 4.5: ${ratio <= 4.5 ? 'met' : 'MISSED'})`)

  console.log('\nEncode / decode throughput (decode from 64 KiB reads):\n')
  console.log('| frame | bytes | encode frames/s | decode frames/s | decode MB/s |')
  console.log('|---|---|---|---|---|')
  throughput('get_token request', encodeFrame({ v: 3, id: '12345', op: 'get_token', payload: { provider: 'anthropic', bucket: 'default' } }), 200_000)
  throughput(
    'token answer',
    encodeFrame({ id: '12345', ok: true, data: { access_token: 'a'.repeat(1_200), expiry: 1_900_000_000, token_type: 'Bearer', scope: 'read write' } }),
    100_000,
  )
  throughput('64 KiB answer', bigFrame(65_536), 2_000)
  await Promise.resolve()
}
