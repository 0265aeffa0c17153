// Must show: 1,000 connections opened and held, a handshake flood and a request flood
// (each from a separate process): memory stays bounded, RESOURCE_EXHAUSTED /
// RATE_LIMITED come back as documented, and a legitimate client is served throughout.
// Latency is measured and logged, never asserted (timing belongs in bench/).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { ProxySocketClient } from '@credproxy/core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { auditCount, startSecureSession, type SecureSession } from './helpers/security-helpers.js'

const FLOOD = fileURLToPath(new URL('./fixtures/security-flood.mjs', import.meta.url))
const HELD_CONNECTIONS = 1_000
const HANDSHAKE_ATTEMPTS = 500
const FLOOD_REQUESTS = 2_000
/** Server heap growth allowed while the flood is held (the 1,000 sockets cost far less). */
const MAX_HEAP_GROWTH_BYTES = 64 * 1024 * 1024

let session: SecureSession
let legit: ProxySocketClient
const latenciesMs: number[] = []

beforeAll(async () => {
  session = await startSecureSession({ grants: { providers: [{ provider: 'anthropic' }], keys: [], capabilities: ['read'] } })
  await session.stores.tokens.saveToken('anthropic', { access_token: 'at-legit', expiry: 4_000_000_000, token_type: 'Bearer' })
  legit = session.client()
  await legit.request('get_token', { provider: 'anthropic' })
})

afterAll(async () => {
  const sorted = [...latenciesMs].sort((a, b) => a - b)
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]?.toFixed(1)
  console.log(`legitimate client under flood: ${sorted.length} requests, p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, max ${at(1)} ms`)
  await session.cleanup()
})

/** The legitimate client asks `count` times; every answer must be its token. */
async function legitServed(count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const started = performance.now()
    const token = await legit.request('get_token', { provider: 'anthropic' })
    latenciesMs.push(performance.now() - started)
    expect(token.access_token).toBe('at-legit')
  }
}

function flood(mode: string, count: number): { child: ChildProcessWithoutNullStreams; lines: AsyncIterator<string> } {
  const child = spawn(process.execPath, [FLOOD, mode, String(count), session.socketPath])
  child.stderr.resume()
  return { child, lines: createInterface({ input: child.stdout })[Symbol.asyncIterator]() }
}

async function nextJson(lines: AsyncIterator<string>): Promise<Record<string, unknown>> {
  const line = await lines.next()
  if (line.done === true) throw new Error('flood process ended without a report')
  return JSON.parse(line.value) as Record<string, unknown>
}

describe('flood', () => {
  test('1,000 connections held: the extra ones get RESOURCE_EXHAUSTED, memory stays bounded, the client is served', async () => {
    const heapBefore = process.memoryUsage().heapUsed
    const { child, lines } = flood('hold', HELD_CONNECTIONS)
    const held = await nextJson(lines)
    expect(held).toMatchObject({ phase: 'held' })
    const heapGrowth = process.memoryUsage().heapUsed - heapBefore
    await legitServed(20)
    const limit = session.server.limits.maxPendingHandshakesPerSession
    const peers = session.server.peers()
    expect(peers.filter((p) => p.version === undefined).length).toBeLessThanOrEqual(limit)
    expect(peers.filter((p) => p.version !== undefined)).toHaveLength(1)

    // The oldest pending ones are evicted as new ones come, the rest dropped at the handshake deadline: all end up closed.
    const closed = await nextJson(lines)
    child.kill()
    const codes = closed['codes'] as Record<string, number>
    const opened = Number(closed['opened'])
    expect(opened).toBe(HELD_CONNECTIONS)
    // The only answer a flooder ever gets is RESOURCE_EXHAUSTED (evicted; the rest are dropped at the
    // handshake deadline); when the flood connects faster than that deadline, all but `limit` get it.
    expect(Object.keys(codes)).toEqual(['RESOURCE_EXHAUSTED'])
    expect(codes['RESOURCE_EXHAUSTED']).toBeGreaterThanOrEqual(limit)
    expect(heapGrowth).toBeLessThan(MAX_HEAP_GROWTH_BYTES)
    console.log(`held flood: ${opened} opened, ${codes['RESOURCE_EXHAUSTED']} RESOURCE_EXHAUSTED, server heap +${(heapGrowth / 1e6).toFixed(1)} MB`)
    await legitServed(5)
    expect(session.server.peers()).toHaveLength(1)
  })

  test('a handshake flood with wrong proofs: every attempt refused, the client served meanwhile', async () => {
    const { child, lines } = flood('handshake', HANDSHAKE_ATTEMPTS)
    const report = nextJson(lines)
    await legitServed(20)
    const done = await report
    child.kill()
    const codes = done['codes'] as Record<string, number>
    expect(codes['ok']).toBeUndefined()
    expect((codes['UNAUTHORIZED'] ?? 0) + (codes['RESOURCE_EXHAUSTED'] ?? 0)).toBe(HANDSHAKE_ATTEMPTS)
    expect(codes['UNAUTHORIZED']).toBeGreaterThan(0)
    const audited = await session.auditLines()
    expect(auditCount(audited, (line) => line.event === 'handshake_failed' && line.reason === 'bad-proof')).toBe(codes['UNAUTHORIZED'])
  })

  test('a request flood on one connection gets RATE_LIMITED with retryAfter (past 16 in flight it is slowed, not refused); the client is served', async () => {
    const started = performance.now()
    const { child, lines } = flood('requests', FLOOD_REQUESTS)
    child.stdin.end(`${session.secret.toString('hex')}\n`)
    const report = nextJson(lines)
    await legitServed(20)
    const done = await report
    const elapsedSeconds = (performance.now() - started) / 1000
    child.kill()
    const codes = done['codes'] as Record<string, number>
    expect(done['answers']).toBe(FLOOD_REQUESTS)
    expect(codes['RATE_LIMITED']).toBeGreaterThan(FLOOD_REQUESTS / 2)
    expect(codes['RESOURCE_EXHAUSTED']).toBeUndefined()
    // The bucket: its burst at once, then the sustained rate for as long as the flood lasted.
    const { rateLimitBurst, rateLimitPerSecond } = session.server.limits
    expect(codes['ok']).toBeLessThanOrEqual(rateLimitBurst + Math.ceil(rateLimitPerSecond * elapsedSeconds))
    expect(Number(done['retryAfter'])).toBeGreaterThan(0)
  })
})
