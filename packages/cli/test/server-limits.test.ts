// Hostile and heavy peers over a real Unix socket: the in-flight cap, cancel,
// out-of-order answers, oversized and partial frames, a slow reader, malformed
// payloads, the connection cap, the rate limit and the peer check. After each
// one, a fresh client is still served.
import { encodeFrame, FRAME_HEADER_BYTES, ProxySocketClient } from '@credproxy/core'
import { afterEach, describe, expect, test, vi } from 'vitest'
import { startServer, TOKEN, type ServerFixture } from './helpers/server-fixture.js'
import type { MemoryKeyStorage, MemoryTokenStore } from './helpers/server-memory-stores.js'
import { RawClient } from './helpers/server-raw-client.js'
import { MAX_HANDSHAKE_FRAME_BYTES } from '../src/broker/limits.js'

type Stores = { tokens: MemoryTokenStore; keys: MemoryKeyStorage; backend: 'file' }
let fx: ServerFixture<Stores> | undefined
afterEach(async () => {
  await fx?.cleanup()
  fx = undefined
})

async function seeded(options: Parameters<typeof startServer<Stores>>[0] = {}): Promise<ServerFixture<Stores>> {
  fx = await startServer<Stores>(options)
  await fx.stores.tokens.saveToken('anthropic', TOKEN)
  await fx.stores.keys.saveKey('OPENAI_API_KEY', 'sk-openai')
  return fx
}

async function expectStillServing(f: ServerFixture<Stores>): Promise<void> {
  const c = await f.client()
  expect(await c.request('get_api_key', { name: 'OPENAI_API_KEY' })).toMatchObject({ ok: true, data: { key: 'sk-openai' } })
  c.close()
}

/** Hold every store read until release() is called. */
function gate(stores: MemoryTokenStore): () => void {
  let release!: () => void
  stores.gate = new Promise<void>((resolve) => (release = resolve))
  return () => {
    stores.gate = undefined
    release()
  }
}

describe('in flight', () => {
  test('100 requests pipelined on one connection: 100 answers, none RESOURCE_EXHAUSTED or RATE_LIMITED', async () => {
    const f = await seeded()
    const c = await f.client()
    const release = gate(f.stores.tokens)
    let bytes = Buffer.alloc(0)
    for (let i = 0; i < 100; i++) bytes = Buffer.concat([bytes, encodeFrame({ v: 3, id: `p${i}`, op: 'get_token', payload: { provider: 'anthropic' } })])
    c.sendRaw(bytes) // one write: the server reads all 100 at once
    await vi.waitFor(() => expect(f.server.peers()[0]?.inFlight).toBe(16), { timeout: 5_000, interval: 10 })
    expect(f.server.peers()[0]?.readingPaused).toBe(true)
    release()
    const answers = await Promise.all(Array.from({ length: 100 }, (_, i) => c.answerTo(`p${i}`)))
    expect(answers.filter((a) => a['ok'] !== true)).toEqual([])
    expect(f.server.peers()[0]?.readingPaused).toBe(false)
    c.close()
  })

  test('a peer pipelining 20,000 requests is not read past the 16 in flight: the bytes wait on its side, then all are answered', async () => {
    const f = await seeded({ limits: { rateLimitPerSecond: 1e6, rateLimitBurst: 1e6 } })
    const c = await f.client()
    const release = gate(f.stores.tokens)
    const total = 20_000
    const batch = Buffer.concat(Array.from({ length: total }, (_, i) => encodeFrame({ v: 3, id: `q${i}`, op: 'get_token', payload: { provider: 'anthropic' } })))
    c.sendRaw(batch) // ~1.5 MB in one write
    await vi.waitFor(() => expect(f.server.peers()[0]?.inFlight).toBe(16), { timeout: 5_000, interval: 10 })
    await new Promise((resolve) => setTimeout(resolve, 200))
    // The server stopped reading: most of the batch is still in this process (kernel buffers hold the rest).
    expect(c.socket.writableLength).toBeGreaterThan(batch.length / 2)
    expect(f.server.peers()[0]?.inFlight).toBe(16)
    release()
    await c.until(() => c.frames.length >= total + 2)
    const answers = c.frames.slice(2)
    expect(answers.filter((a) => a['ok'] !== true)).toEqual([])
    expect(new Set(answers.map((a) => a['id'])).size).toBe(total)
    c.close()
  })

  test('the 17th concurrent request waits for a slot (no error); the 16 are all answered; cancel is exempt', async () => {
    const f = await seeded()
    const c = await f.client()
    const release = gate(f.stores.tokens)
    for (let i = 0; i < 16; i++) c.send({ v: 3, id: `h${i}`, op: 'get_token', payload: { provider: 'anthropic' } })
    c.send({ v: 3, id: 'over', op: 'get_token', payload: { provider: 'anthropic' } })
    // Queued behind the waiting request, a cancel is still handled: it needs no slot.
    c.send({ v: 3, id: 'cx', op: 'cancel', payload: { targetId: 'h15' } })
    expect(await c.answerTo('cx')).toMatchObject({ ok: true, data: { cancelled: true } })
    expect(await c.answerTo('h15')).toMatchObject({ ok: false, code: 'CANCELLED' })
    expect(c.frames.some((fr) => fr['id'] === 'over')).toBe(false)
    expect(f.server.peers()[0]?.readingPaused).toBe(true)
    release()
    for (let i = 0; i < 15; i++) expect(await c.answerTo(`h${i}`)).toMatchObject({ ok: true })
    expect(await c.answerTo('over')).toMatchObject({ ok: true })
    // Exactly one answer per id, even for the cancelled one whose handler finished later.
    await c.request('list_providers')
    const ids = c.frames.map((fr) => fr['id']).filter((id) => id !== undefined)
    expect(ids.filter((id) => id === 'h15')).toHaveLength(1)
    expect(new Set(ids).size).toBe(ids.length)
    c.close()
  })

  test('a cancelled request keeps its slot until its handler settles: the 17th waits, then is served', async () => {
    const f = await seeded()
    const c = await f.client()
    const tokens = f.stores.tokens
    // Count the held store writes that really finished (the host work cancel cannot stop).
    const update = tokens.updateToken.bind(tokens)
    let settled = 0
    let allSettled!: () => void
    const heldDone = new Promise<void>((resolve) => (allSettled = resolve))
    tokens.updateToken = async (...args) => {
      try {
        return await update(...args)
      } finally {
        if (++settled === 16) allSettled()
      }
    }
    const release = gate(tokens)
    const token = { access_token: 'at-held', expiry: 4_000_000_000, token_type: 'Bearer' }
    for (let i = 0; i < 16; i++) c.send({ v: 3, id: `s${i}`, op: 'save_token', payload: { provider: 'p', bucket: `b${i}`, token } })
    for (let i = 0; i < 16; i++) c.send({ v: 3, id: `x${i}`, op: 'cancel', payload: { targetId: `s${i}` } })
    for (let i = 0; i < 16; i++) {
      expect(await c.answerTo(`s${i}`)).toMatchObject({ ok: false, code: 'CANCELLED' })
      expect(await c.answerTo(`x${i}`)).toMatchObject({ ok: true, data: { cancelled: true } })
    }
    // The 16 handlers still hold their store writes: no room for more host work, so it waits.
    c.send({ v: 3, id: 'over', op: 'save_token', payload: { provider: 'p', bucket: 'over', token } })
    expect((await c.request('cancel', { targetId: 's0' }))['data']).toEqual({ cancelled: false })
    expect(c.frames.some((fr) => fr['id'] === 'over')).toBe(false)
    expect(settled).toBe(0)
    release()
    await heldDone
    expect(await c.answerTo('over')).toMatchObject({ ok: true })
    c.send({ v: 3, id: 'after', op: 'save_token', payload: { provider: 'p', bucket: 'after', token } })
    expect(await c.answerTo('after')).toMatchObject({ ok: true })
    await c.request('list_providers')
    const ids = c.frames.map((fr) => fr['id']).filter((id) => id !== undefined)
    expect(new Set(ids).size).toBe(ids.length)
    expect(ids.filter((id) => String(id).startsWith('s'))).toHaveLength(16)
    c.close()
  })

  test('cancel of an unknown or finished id answers cancelled: false', async () => {
    const f = await seeded()
    const c = await f.client()
    await c.request('get_token', { provider: 'anthropic' })
    expect((await c.request('cancel', { targetId: 'r0' }))['data']).toEqual({ cancelled: false })
    expect((await c.request('cancel', { targetId: 'never-sent' }))['data']).toEqual({ cancelled: false })
    c.close()
  })

  test('a duplicate in-flight id is INVALID_REQUEST and the first still gets its own answer', async () => {
    const f = await seeded()
    const c = await f.client()
    const release = gate(f.stores.tokens)
    c.send({ v: 3, id: 'same', op: 'get_token', payload: { provider: 'anthropic' } })
    c.send({ v: 3, id: 'same', op: 'get_token', payload: { provider: 'anthropic' } })
    expect(await c.answerTo('same')).toMatchObject({ ok: false, code: 'INVALID_REQUEST' })
    release()
    await c.until(() => c.frames.filter((fr) => fr['id'] === 'same').length === 2)
    expect(c.frames.filter((fr) => fr['id'] === 'same').map((fr) => fr['ok'])).toEqual([false, true])
    c.close()
  })

  test('answers come out of order: a key read overtakes a held token read', async () => {
    const f = await seeded()
    const c = await f.client()
    const release = gate(f.stores.tokens)
    c.send({ v: 3, id: 'slow', op: 'get_token', payload: { provider: 'anthropic' } })
    c.send({ v: 3, id: 'fast', op: 'get_api_key', payload: { name: 'OPENAI_API_KEY' } })
    await c.answerTo('fast')
    release()
    await c.answerTo('slow')
    const order = c.frames.map((fr) => fr['id']).filter((id) => id === 'slow' || id === 'fast')
    expect(order).toEqual(['fast', 'slow'])
    c.close()
  })
})

describe('frames', () => {
  test('before the handshake, a frame header declaring more than MAX_HANDSHAKE_FRAME_BYTES is refused at once', async () => {
    const f = await seeded()
    const c = await RawClient.connect(f.socketPath)
    const header = Buffer.alloc(FRAME_HEADER_BYTES)
    header.writeUInt32BE(MAX_HANDSHAKE_FRAME_BYTES + 1)
    // Only the header is sent: the broker must not wait for (or reserve room for) the body.
    c.sendRaw(header)
    await c.waitClosed()
    expect(f.audit).toContainEqual(expect.objectContaining({ event: 'handshake_failed', reason: 'frame-too-large' }))
    await expectStillServing(f)
  })

  test('after the handshake, frames up to the version limit are accepted again', async () => {
    const f = await seeded()
    const c = await f.client()
    const answer = await c.request('list_providers', { pad: 'x'.repeat(2 * MAX_HANDSHAKE_FRAME_BYTES) })
    expect(typeof answer['ok']).toBe('boolean')
    expect(c.closed).toBe(false)
    c.close()
  })

  test('an oversized frame is closed as soon as its header arrives', async () => {
    const f = await seeded()
    const c = await f.client()
    const header = Buffer.alloc(FRAME_HEADER_BYTES)
    header.writeUInt32BE(4_194_305)
    c.sendRaw(header)
    await c.waitClosed()
    expect(f.audit.some((e) => e.reason === 'frame-too-large')).toBe(true)
    await expectStillServing(f)
  })

  test('a frame that never completes is closed at the partial-frame deadline', async () => {
    const f = await seeded({ limits: { partialFrameTimeoutMs: 100 } })
    const c = await f.client()
    const frame = encodeFrame({ v: 3, id: 'p', op: 'list_providers', payload: {} })
    c.sendRaw(frame.subarray(0, frame.length - 3))
    await c.waitClosed()
    expect(c.frames.some((fr) => fr['id'] === 'p')).toBe(false)
    expect(f.audit.some((e) => e.reason === 'partial-frame-timeout')).toBe(true)
    await expectStillServing(f)
  })

  test('frames behind a fatal one in the same write never run: a save_token after a request without an id stores nothing', async () => {
    const f = await seeded()
    const c = await f.client()
    const token = { access_token: 'at-after-fatal', expiry: 4_000_000_000, token_type: 'Bearer' }
    c.sendRaw(
      Buffer.concat([
        encodeFrame({ v: 3, op: 'get_token', payload: { provider: 'anthropic' } }),
        encodeFrame({ v: 3, id: 'late', op: 'save_token', payload: { provider: 'late', token } }),
        encodeFrame({ v: 3, id: 'late2', op: 'remove_token', payload: { provider: 'anthropic' } }),
      ]),
    )
    await c.waitClosed()
    await expectStillServing(f)
    expect(c.frames.some((fr) => fr['id'] === 'late' || fr['id'] === 'late2')).toBe(false)
    expect(await f.stores.tokens.listProviders()).toEqual(['anthropic'])
    expect(f.audit.filter((e) => e.op === 'save_token' || e.op === 'remove_token')).toEqual([])
  })

  test('a frame split across writes is answered', async () => {
    const f = await seeded()
    const c = await f.client()
    const frame = encodeFrame({ v: 3, id: 'split', op: 'get_api_key', payload: { name: 'OPENAI_API_KEY' } })
    for (let i = 0; i < frame.length; i += 7) c.sendRaw(frame.subarray(i, i + 7))
    expect(await c.answerTo('split')).toMatchObject({ ok: true })
    c.close()
  })

  test.each([
    ['an empty frame', Buffer.from('00000000', 'hex')],
    ['invalid JSON', Buffer.concat([Buffer.from('00000003', 'hex'), Buffer.from('{x}')])],
    ['invalid UTF-8', Buffer.concat([Buffer.from('00000004', 'hex'), Buffer.from('22ff2222', 'hex')])],
    ['a JSON array', Buffer.concat([Buffer.from('00000002', 'hex'), Buffer.from('[]')])],
  ])('%s closes the connection; the server keeps serving', async (_name, bytes) => {
    const f = await seeded()
    const c = await f.client()
    c.sendRaw(bytes)
    await c.waitClosed()
    await expectStillServing(f)
  })
})

describe('malformed requests', () => {
  const cases: Array<[string, Record<string, unknown>]> = [
    ['extra payload key', { op: 'get_token', payload: { provider: 'anthropic', extra: 1 } }],
    ['wrong type', { op: 'get_token', payload: { provider: 42 } }],
    ['bad provider name', { op: 'get_token', payload: { provider: '../etc/passwd' } }],
    ['huge string', { op: 'get_api_key', payload: { name: 'K'.repeat(1_000_000) } }],
    ['op toString', { op: 'toString', payload: {} }],
    ['op constructor', { op: 'constructor', payload: {} }],
    ['op __proto__', { op: '__proto__', payload: {} }],
    ['op hasOwnProperty', { op: 'hasOwnProperty', payload: {} }],
    ['payload not an object', { op: 'list_providers', payload: 'x' }],
    ['save_token token missing', { op: 'save_token', payload: { provider: 'anthropic' } }],
    ['oauth session id too short', { op: 'oauth_poll', payload: { session_id: 'x' } }],
    ['cancel without targetId', { op: 'cancel', payload: {} }],
  ]
  test.each(cases)('%s is INVALID_REQUEST with the id', async (_name, body) => {
    const f = await seeded()
    const c = await f.client()
    c.send({ v: 3, id: 'm', ...body })
    expect(await c.answerTo('m')).toMatchObject({ ok: false, code: 'INVALID_REQUEST' })
    expect((await c.request('list_providers'))['ok']).toBe(true)
    c.close()
  })

  test('__proto__ and constructor keys written into the JSON payload are refused, not merged', async () => {
    const f = await seeded()
    const c = await f.client()
    for (const key of ['__proto__', 'constructor', 'prototype']) {
      const raw = `{"v":3,"id":"${key}","op":"get_token","payload":{"provider":"anthropic","${key}":{"polluted":true}}}`
      const body = Buffer.from(raw)
      const header = Buffer.alloc(4)
      header.writeUInt32BE(body.length)
      c.sendRaw(Buffer.concat([header, body]))
      expect(await c.answerTo(key)).toMatchObject({ ok: false, code: 'INVALID_REQUEST' })
    }
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined()
    c.close()
  })

  test('a request without a usable id closes the connection (no answer could be matched)', async () => {
    const f = await seeded()
    const c = await f.client()
    c.send({ v: 3, id: 17, op: 'list_providers', payload: {} })
    await c.waitClosed()
    await expectStillServing(f)
  })
})

describe('connection-level limits', () => {
  test('a slow reader is paused with bounded unwritten bytes while other clients are served', async () => {
    const f = await seeded({ limits: { maxBufferedBytesPerConnection: 64 * 1024, rateLimitPerSecond: 1e6, rateLimitBurst: 1e6 } })
    await f.stores.tokens.saveToken('big', { ...TOKEN, padding: 'p'.repeat(8 * 1024) })
    const slow = await f.client()
    slow.socket.pause() // never read
    const total = 3_000
    const batch = Buffer.concat(
      Array.from({ length: total }, (_, i) => encodeFrame({ v: 3, id: `s${i}`, op: 'get_token', payload: { provider: 'big' } })),
    )
    slow.sendRaw(batch)
    await vi.waitFor(() => expect(f.server.peers().some((p) => p.readingPaused)).toBe(true), { timeout: 10_000, interval: 20 })
    const paused = f.server.peers().find((p) => p.readingPaused)
    // Bounded: the limit plus at most the answers of one in-flight window.
    expect(paused?.bufferedBytes).toBeLessThan(64 * 1024 + 17 * 9 * 1024)
    const handled = f.audit.filter((e) => e.event === 'request').length
    expect(handled).toBeLessThan(total)
    await expectStillServing(f)
    // Once the reader catches up, every request gets exactly one answer.
    slow.socket.resume()
    // The first two frames answer the handshake.
    await slow.until(() => slow.frames.length >= total + 2)
    const ids = new Set(slow.frames.slice(2).map((fr) => fr['id']))
    expect(ids.size).toBe(total)
    slow.close()
  })

  test('held unauthenticated connections never lock a client out: the oldest pending one makes room', async () => {
    const f = await seeded({ limits: { maxPendingHandshakesPerSession: 2 } })
    const held = [await RawClient.connect(f.socketPath), await RawClient.connect(f.socketPath)]
    await vi.waitFor(() => expect(f.server.peers()).toHaveLength(2), { timeout: 5_000, interval: 10 })
    // A real client completes its handshake although both pending slots are held.
    await expectStillServing(f)
    expect(await held[0]?.next()).toMatchObject({ op: 'handshake', ok: false, code: 'RESOURCE_EXHAUSTED' })
    await held[0]?.waitClosed()
    expect(f.audit).toContainEqual(expect.objectContaining({ event: 'connection_evicted', outcome: 'RESOURCE_EXHAUSTED', reason: 'pending-handshake' }))
    for (const c of held) c.close()
  })

  test('at the authenticated cap, a new client takes the slot of the least recently active idle one', async () => {
    const f = await seeded({ limits: { maxConnectionsPerSession: 2 } })
    const a = await f.client()
    const b = await f.client()
    await a.request('list_providers')
    await b.request('list_providers')
    // a is the least recently active: it gives up its slot, b keeps its own.
    await expectStillServing(f)
    await a.waitClosed()
    expect((await b.request('list_providers'))['ok']).toBe(true)
    expect(f.audit).toContainEqual(expect.objectContaining({ event: 'connection_evicted', reason: 'idle-connection' }))
    b.close()
  })

  test('at the authenticated cap with every connection busy, the handshake is refused with RESOURCE_EXHAUSTED', async () => {
    const f = await seeded({ limits: { maxConnectionsPerSession: 2 } })
    const a = await f.client()
    const b = await f.client()
    const release = gate(f.stores.tokens)
    a.send({ v: 3, id: 'held', op: 'get_token', payload: { provider: 'anthropic' } })
    b.send({ v: 3, id: 'held', op: 'get_token', payload: { provider: 'anthropic' } })
    await vi.waitFor(() => expect(f.server.peers().every((p) => p.inFlight === 1)).toBe(true), { timeout: 5_000, interval: 10 })
    const c = await RawClient.connect(f.socketPath)
    expect(await c.handshakeV3(f.secret)).toMatchObject({ ok: false, code: 'RESOURCE_EXHAUSTED' })
    await c.waitClosed()
    expect(f.audit).toContainEqual(expect.objectContaining({ event: 'handshake_failed', reason: 'too-many-connections' }))
    release()
    expect(await a.answerTo('held')).toMatchObject({ ok: true })
    expect(await b.answerTo('held')).toMatchObject({ ok: true })
    a.close()
    b.close()
  })

  test('100 back-to-back requests all succeed (the default bucket holds a burst of 200)', async () => {
    const f = await seeded()
    const c = await f.client()
    for (let i = 0; i < 100; i++) c.send({ v: 3, id: `b${i}`, op: 'list_providers', payload: {} })
    const answers = await Promise.all(Array.from({ length: 100 }, (_, i) => c.answerTo(`b${i}`)))
    expect(answers.filter((a) => a['ok'] !== true)).toEqual([])
    c.close()
  })

  test('the socket client waits out RATE_LIMITED: 100 requests through a small bucket all succeed', async () => {
    const f = await seeded({ limits: { rateLimitPerSecond: 500, rateLimitBurst: 20 } })
    const client = new ProxySocketClient({ socketPath: f.socketPath, secret: f.secret })
    try {
      const all = await Promise.allSettled(Array.from({ length: 100 }, () => client.request('list_providers', {})))
      expect(all.filter((r) => r.status === 'rejected')).toEqual([])
      expect(f.audit.filter((e) => e.event === 'request' && e.outcome === 'RATE_LIMITED').length).toBeGreaterThan(0)
    } finally {
      client.close()
    }
  })

  test('a sustained flood is still limited: past the burst, at most the sustained rate gets through', async () => {
    let now = 0
    const f = await seeded({ clock: () => now })
    const { rateLimitBurst, rateLimitPerSecond } = f.server.limits
    const c = await f.client()
    let ok = 0
    // Three seconds of 500 requests per second, on the injected clock.
    for (let step = 0; step < 30; step++) {
      for (let i = 0; i < 50; i++) c.send({ v: 3, id: `f${step}-${i}`, op: 'list_providers', payload: {} })
      const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => c.answerTo(`f${step}-${i}`)))
      ok += answers.filter((a) => a['ok'] === true).length
      now += 100
    }
    expect(ok).toBeLessThanOrEqual(rateLimitBurst + 3 * rateLimitPerSecond)
    expect(ok).toBeGreaterThanOrEqual(rateLimitBurst)
    c.close()
  })

  test('past the rate, RATE_LIMITED with retryAfter; the injected clock refills the bucket', async () => {
    let now = 0
    const f = await seeded({ limits: { rateLimitPerSecond: 10, rateLimitBurst: 10 }, clock: () => now })
    const c = await f.client()
    for (let i = 0; i < 10; i++) expect((await c.request('list_providers'))['ok']).toBe(true)
    expect(await c.request('list_providers')).toMatchObject({ ok: false, code: 'RATE_LIMITED', retryAfter: 0.1 })
    now += 100
    expect((await c.request('list_providers'))['ok']).toBe(true)
    // Per connection: another client has its own bucket.
    const d = await f.client()
    expect((await d.request('list_providers'))['ok']).toBe(true)
    c.close()
    d.close()
  })

  test('a peer refused by the peer check gets FORBIDDEN without being read, and is audited', async () => {
    let refuse = true
    const f = await seeded({
      peerCheck: () => (refuse ? { ok: false, peer: { pid: 1, uid: 4242, gid: 4242 }, reason: 'uid-mismatch' } : { ok: true, peer: { pid: process.pid, uid: 1000, gid: 1000 } }),
    })
    const c = await RawClient.connect(f.socketPath)
    expect(await c.next()).toMatchObject({ ok: false, code: 'FORBIDDEN' })
    await c.waitClosed()
    expect(f.audit).toContainEqual(expect.objectContaining({ event: 'connection_refused', reason: 'uid-mismatch', peer: { pid: 1, uid: 4242, gid: 4242 } }))
    refuse = false
    const ok = await f.client()
    await ok.request('list_providers')
    expect(f.server.peers()).toEqual([expect.objectContaining({ pid: process.pid, uid: 1000, version: 3 })])
    expect(f.audit.filter((e) => e.event === 'request').at(-1)?.peer).toEqual({ pid: process.pid, uid: 1000, gid: 1000 })
    ok.close()
  })
})
