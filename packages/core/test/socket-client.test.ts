// ProxySocketClient over a real Unix socket. The other side is the hand-written
// test peer in helpers/test-peer.ts (raw frames), not the real server, which is
// built and tested in @credproxy/cli.
import { afterEach, describe, expect, test, vi } from 'vitest'
import { encodeFrame, ProxyError, ProxySocketClient, RATE_LIMIT_RETRIES, type ProxySocketClientOptions } from '../src/index.js'
import { TestPeer, TOKEN, type Frame } from './helpers/test-peer.js'

const SECRET = Buffer.alloc(32, 0x42)
const LEGACY = 'a'.repeat(64)

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

async function peer(options: Parameters<typeof TestPeer.start>[0] = {}): Promise<TestPeer> {
  const p = await TestPeer.start({ secret: SECRET, ...options })
  cleanups.push(() => p.close())
  return p
}

function client(p: TestPeer, options: Partial<ProxySocketClientOptions> = {}): ProxySocketClient {
  const c = new ProxySocketClient({ socketPath: p.socketPath, secret: SECRET, reconnectBaseDelayMs: 5, ...options })
  cleanups.push(() => c.close())
  return c
}

async function rejection(promise: Promise<unknown>): Promise<ProxyError> {
  try {
    await promise
  } catch (error) {
    if (error instanceof ProxyError) return error
    throw error
  }
  throw new Error('expected a ProxyError')
}

const answerTokens = (request: Frame, c: Parameters<TestPeer['onRequest']>[1]) => c.reply(request, TOKEN)

describe('handshake', () => {
  test('v3: verifies the server proof, sends the client proof, then the request', async () => {
    const p = await peer({ onRequest: answerTokens })
    const c = client(p)
    expect(c.state).toBe('IDLE')
    await expect(c.request('get_token', { provider: 'anthropic' })).resolves.toEqual(TOKEN)
    expect(c.state).toBe('READY')
    expect(c.version).toBe(3)
    expect(c.session).toBe('test-session')
    const [hello, finish, request] = p.frames
    expect(hello).toMatchObject({ v: 3, op: 'handshake', payload: { minVersion: 1, maxVersion: 3 } })
    expect(Object.keys(hello?.['payload'] as object).sort()).toEqual(['clientNonce', 'maxVersion', 'minVersion'])
    expect(finish?.['op']).toBe('handshake_finish')
    expect(request).toEqual({ v: 3, id: '1', op: 'get_token', payload: { provider: 'anthropic' } })
    // The secret itself never crosses the socket.
    const sent = Buffer.concat(p.connections[0]?.bytes ?? []).toString('latin1')
    expect(sent).not.toContain(SECRET.toString('hex'))
  })

  test('a listener that does not know the secret gets no proof and no request', async () => {
    const p = await peer({ handshake: 'impostor', onRequest: answerTokens })
    const c = client(p)
    const error = await rejection(c.request('get_token', { provider: 'anthropic' }))
    expect(error.code).toBe('SERVER_UNVERIFIED')
    expect(error.message).toContain(p.socketPath)
    expect(p.frames.map((f) => f['op'])).toEqual(['handshake'])
    expect(p.connections).toHaveLength(1) // a failed proof is not retried
    await vi.waitFor(() => expect(p.connections[0]?.socket.destroyed || p.connections[0]?.socket.readableEnded).toBe(true))
    expect(c.state).toBe('IDLE')
  })

  test('a v3 client refuses a downgrade to v2', async () => {
    const p = await peer({ maxVersion: 2, onRequest: answerTokens })
    const error = await rejection(client(p).request('get_token', { provider: 'anthropic' }))
    expect(error.code).toBe('SERVER_UNVERIFIED')
    expect(p.requests).toEqual([])
  })

  test('legacy: v2 with the capability token when constructed without a secret', async () => {
    const p = await peer({ legacyToken: LEGACY, onRequest: answerTokens })
    const c = new ProxySocketClient({ socketPath: p.socketPath, legacyToken: LEGACY })
    cleanups.push(() => c.close())
    await expect(c.request('get_token', { provider: 'anthropic', bucket: 'work' })).resolves.toEqual(TOKEN)
    expect(c.version).toBe(2)
    expect(p.frames[0]).toEqual({ v: 2, op: 'handshake', payload: { minVersion: 1, maxVersion: 2, capabilityToken: LEGACY } })
    expect(p.frames[1]).toEqual({ v: 2, id: '1', op: 'get_token', payload: { provider: 'anthropic', bucket: 'work' } })
  })

  test('legacy: a wrong token gives UNAUTHORIZED with the server message', async () => {
    const p = await peer({ legacyToken: LEGACY })
    const c = new ProxySocketClient({ socketPath: p.socketPath, legacyToken: 'b'.repeat(64) })
    cleanups.push(() => c.close())
    const error = await rejection(c.request('list_providers', {}))
    expect(error.code).toBe('UNAUTHORIZED')
    expect(error.message).toBe('bad token')
    expect(p.connections).toHaveLength(1)
  })

  test('UNKNOWN_VERSION from the server is final', async () => {
    const p = await peer({ handshake: 'unknown-version' })
    const error = await rejection(client(p).request('list_providers', {}))
    expect(error.code).toBe('UNKNOWN_VERSION')
    expect(p.connections).toHaveLength(1)
  })

  test('ops newer than the negotiated version fail locally', async () => {
    const p = await peer({ legacyToken: LEGACY, maxVersion: 2, onRequest: answerTokens })
    const c = new ProxySocketClient({ socketPath: p.socketPath, legacyToken: LEGACY })
    cleanups.push(() => c.close())
    await c.request('get_token', { provider: 'a' })
    expect((await rejection(c.request('session_info', {}))).code).toBe('UNKNOWN_VERSION')
    expect(p.requests.map((r) => r['op'])).toEqual(['get_token'])
  })

  test('a listener that never answers the handshake: CONNECTION_FAILED after bounded attempts, no request sent', async () => {
    const p = await peer({ handshake: 'silent' })
    const c = client(p, { handshakeTimeoutMs: 50, connectAttempts: 2 })
    const error = await rejection(c.request('list_providers', {}))
    expect(error.code).toBe('CONNECTION_FAILED')
    expect(error.message).toContain('handshake')
    expect(p.connections).toHaveLength(2)
    expect(p.requests).toEqual([])
  })

  test('no broker at the path: CONNECTION_FAILED naming the path after bounded attempts', async () => {
    const p = await peer()
    const c = new ProxySocketClient({ socketPath: `${p.dir}/missing.sock`, secret: SECRET, reconnectBaseDelayMs: 1, connectAttempts: 3 })
    cleanups.push(() => c.close())
    const error = await rejection(c.request('list_providers', {}))
    expect(error.code).toBe('CONNECTION_FAILED')
    expect(error.message).toContain(`${p.dir}/missing.sock`)
    expect(error.message).toContain('3 attempts')
  })
})

describe('requests', () => {
  test('concurrent requests are matched by id when answered out of order', async () => {
    const held: Frame[] = []
    const p = await peer({
      onRequest: (request, c) => {
        held.push(request)
        if (held.length === 5) for (const r of held.reverse()) c.reply(r, { exists: (r['payload'] as Frame)['name'] === 'K3' })
      },
    })
    const c = client(p)
    const names = ['K1', 'K2', 'K3', 'K4', 'K5']
    const answers = await Promise.all(names.map((name) => c.request('has_api_key', { name })))
    expect(answers.map((a) => a.exists)).toEqual([false, false, true, false, false])
    expect(new Set(p.requests.map((r) => r['id'])).size).toBe(5)
  })

  test('at most 16 requests are in flight; the rest wait and are all answered', async () => {
    let unanswered = 0
    let maxUnanswered = 0
    const held: Frame[] = []
    const p = await peer({
      onRequest: (request, c) => {
        unanswered++
        maxUnanswered = Math.max(maxUnanswered, unanswered)
        held.push(request)
        // Answer in batches once the window is full, so the cap is actually exercised.
        if (held.length === 16 || (p.requests.length === 40 && held.length > 0)) {
          for (const r of held.splice(0)) {
            unanswered--
            c.reply(r, TOKEN)
          }
        }
      },
    })
    const c = client(p)
    const all = await Promise.all(Array.from({ length: 40 }, (_, i) => c.request('get_token', { provider: `p${i}` })))
    expect(all).toHaveLength(40)
    expect(maxUnanswered).toBe(16)
    expect(p.connections).toHaveLength(1)
  })

  test('an error answer becomes ProxyError with code, message and retryAfter', async () => {
    const p = await peer({ onRequest: (r, c) => c.fail(r, 'RATE_LIMITED', 'slow\u001b[31m down', 2) })
    const error = await rejection(client(p).request('get_token', { provider: 'a' }))
    expect(error).toBeInstanceOf(ProxyError)
    expect(error.code).toBe('RATE_LIMITED')
    expect(error.retryAfter).toBe(2)
    expect(error.message).toBe('slow [31m down') // terminal escapes are not passed to the user's screen
  })

  test('NOT_GRANTED and unknown codes', async () => {
    const p = await peer({ onRequest: (r, c) => c.fail(r, (r['payload'] as Frame)['name'] === 'A' ? 'NOT_GRANTED' : 'NEW_CODE') })
    const c = client(p)
    expect((await rejection(c.request('get_api_key', { name: 'A' }))).code).toBe('NOT_GRANTED')
    const unknown = await rejection(c.request('get_api_key', { name: 'B' }))
    expect(unknown.code).toBe('INTERNAL_ERROR')
    expect(unknown.message).toContain('NEW_CODE')
  })

  test('data that does not match the op schema is PROTOCOL_ERROR', async () => {
    const p = await peer({ onRequest: (r, c) => c.reply(r, { access_token: 'x' }) })
    expect((await rejection(client(p).request('get_token', { provider: 'a' }))).code).toBe('PROTOCOL_ERROR')
  })

  test('an invalid payload is refused locally and nothing is sent', async () => {
    const p = await peer()
    const c = client(p)
    const error = await rejection(c.request('get_token', { provider: 'bad name!' }))
    expect(error.code).toBe('INVALID_REQUEST')
    expect(error.message).toContain('provider')
    expect(p.connections).toHaveLength(0)
  })

  test('a timeout rejects with TIMEOUT and sends cancel for the request', async () => {
    const p = await peer({ onRequest: (r, c) => (r['op'] === 'cancel' ? c.reply(r, { cancelled: true }) : undefined) })
    const c = client(p, { requestTimeoutMs: 100 })
    const error = await rejection(c.request('get_token', { provider: 'slow' }))
    expect(error.code).toBe('TIMEOUT')
    await vi.waitFor(() => expect(p.requests.map((r) => r['op'])).toEqual(['get_token', 'cancel']))
    expect(p.requests[1]?.['payload']).toEqual({ targetId: p.requests[0]?.['id'] })
  })

  test('an abort rejects with CANCELLED and sends cancel; the late answer is ignored', async () => {
    const p = await peer({ onRequest: () => undefined })
    const c = client(p)
    const controller = new AbortController()
    const pending = c.request('get_token', { provider: 'slow' }, { signal: controller.signal })
    await vi.waitFor(() => expect(p.requests).toHaveLength(1))
    controller.abort()
    expect((await rejection(pending)).code).toBe('CANCELLED')
    await vi.waitFor(() => expect(p.requests.map((r) => r['op'])).toEqual(['get_token', 'cancel']))
    // The server's CANCELLED for the target arrives later and must not disturb anything.
    const target = p.requests[0] as Frame
    p.connections[0]?.fail(target, 'CANCELLED')
    p.onRequest = answerTokens
    await expect(c.request('get_token', { provider: 'next' })).resolves.toEqual(TOKEN)
  })

  test('an already aborted signal sends nothing', async () => {
    const p = await peer()
    const c = client(p)
    const error = await rejection(c.request('get_token', { provider: 'x' }, { signal: AbortSignal.abort() }))
    expect(error.code).toBe('CANCELLED')
    expect(p.connections).toHaveLength(0)
  })

  test('v1 has no cancel: a timeout sends nothing more', async () => {
    const p = await peer({ legacyToken: LEGACY, maxVersion: 1, onRequest: () => undefined })
    const c = new ProxySocketClient({ socketPath: p.socketPath, legacyToken: LEGACY, requestTimeoutMs: 50 })
    cleanups.push(() => c.close())
    expect((await rejection(c.request('get_token', { provider: 'a' }))).code).toBe('TIMEOUT')
    expect(c.version).toBe(1)
    expect(p.requests.map((r) => r['op'])).toEqual(['get_token'])
  })
})

describe('RATE_LIMITED: wait out the server retryAfter and send again', () => {
  test('a request limited twice succeeds on the third try, after at least retryAfter each time', async () => {
    const sentAt: number[] = []
    const p = await peer({
      onRequest: (r, c) => {
        sentAt.push(performance.now())
        if (sentAt.length <= 2) c.fail(r, 'RATE_LIMITED', 'slow down', 0.05)
        else c.reply(r, TOKEN)
      },
    })
    await expect(client(p).request('get_token', { provider: 'a' })).resolves.toEqual(TOKEN)
    expect(sentAt).toHaveLength(3)
    expect((sentAt[1] ?? 0) - (sentAt[0] ?? 0)).toBeGreaterThanOrEqual(45)
    expect((sentAt[2] ?? 0) - (sentAt[1] ?? 0)).toBeGreaterThanOrEqual(90) // doubled
  })

  test('attempts are bounded: a server that always limits gives RATE_LIMITED after RATE_LIMIT_RETRIES retries', async () => {
    const p = await peer({ onRequest: (r, c) => c.fail(r, 'RATE_LIMITED', 'slow down', 0.001) })
    const error = await rejection(client(p).request('get_token', { provider: 'a' }))
    expect(error.code).toBe('RATE_LIMITED')
    expect(p.requests).toHaveLength(RATE_LIMIT_RETRIES + 1)
  })

  test('a retry that would end after the request timeout is not made: the caller gets RATE_LIMITED at once', async () => {
    const p = await peer({ onRequest: (r, c) => c.fail(r, 'RATE_LIMITED', 'slow down', 0.5) })
    const started = performance.now()
    const error = await rejection(client(p).request('get_token', { provider: 'a' }, { timeoutMs: 200 }))
    expect(error.code).toBe('RATE_LIMITED')
    expect(performance.now() - started).toBeLessThan(150)
    expect(p.requests).toHaveLength(1)
  })

  test('an abort during the wait cancels the request and nothing more is sent', async () => {
    const p = await peer({ onRequest: (r, c) => c.fail(r, 'RATE_LIMITED', 'slow down', 0.3) })
    const controller = new AbortController()
    const pending = rejection(client(p).request('get_token', { provider: 'a' }, { signal: controller.signal }))
    await vi.waitFor(() => expect(p.requests).toHaveLength(1))
    controller.abort()
    expect((await pending).code).toBe('CANCELLED')
    await new Promise((resolve) => setTimeout(resolve, 700))
    expect(p.requests).toHaveLength(1)
  })
})


describe('connection life', () => {
  test('closes when idle and reconnects lazily on the next request', async () => {
    const p = await peer({ onRequest: answerTokens })
    const c = client(p, { idleTimeoutMs: 30 })
    await c.request('get_token', { provider: 'a' })
    await vi.waitFor(() => expect(p.connections[0]?.socket.readableEnded || p.connections[0]?.socket.destroyed).toBe(true))
    expect(c.state).toBe('IDLE')
    await expect(c.request('get_token', { provider: 'b' })).resolves.toEqual(TOKEN)
    expect(p.connections).toHaveLength(2)
  })

  test('server closing mid-request: pending requests get CONNECTION_FAILED, the next one reconnects', async () => {
    const p = await peer({
      onRequest: (r, c) => {
        if (c.index === 0) c.socket.destroy()
        else c.reply(r, TOKEN)
      },
    })
    const c = client(p)
    const [a, b] = await Promise.allSettled([c.request('get_token', { provider: 'a' }), c.request('get_token', { provider: 'b' })])
    expect(a.status === 'rejected' && (a.reason as ProxyError).code).toBe('CONNECTION_FAILED')
    expect(b.status === 'rejected' && (b.reason as ProxyError).code).toBe('CONNECTION_FAILED')
    await expect(c.request('get_token', { provider: 'c' })).resolves.toEqual(TOKEN)
    expect(p.connections).toHaveLength(2)
  })

  test("a torn-down socket's late events do not touch the next connection", async () => {
    let next: Promise<unknown> | undefined
    const p = await peer({
      onRequest: (r, c) => {
        if (c.index === 0) {
          // Half-close: the client sees 'end' first; the socket's 'close' comes later,
          // after the client already opened connection 2 from the rejection handler.
          c.socket.end()
        } else c.reply(r, TOKEN)
      },
    })
    const c = client(p)
    const first = c.request('get_token', { provider: 'a' }).catch((error: unknown) => {
      next = c.request('get_token', { provider: 'b' })
      throw error
    })
    expect((await rejection(first)).code).toBe('CONNECTION_FAILED')
    await expect(next).resolves.toEqual(TOKEN)
    // Give connection 1's remaining events time to fire, then use connection 2 again.
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(c.state).toBe('READY')
    await expect(c.request('get_token', { provider: 'c' })).resolves.toEqual(TOKEN)
    expect(p.connections).toHaveLength(2)
  })

  test('an oversized frame from the server fails the request with PROTOCOL_ERROR before its body is buffered', async () => {
    const p = await peer({
      onRequest: (r, c) => {
        if (c.index === 0) c.sendRaw(Buffer.from('00400001', 'hex')) // 4 MiB + 1, no body
        else c.reply(r, TOKEN)
      },
    })
    const c = client(p)
    const error = await rejection(c.request('get_token', { provider: 'a' }))
    expect(error.code).toBe('PROTOCOL_ERROR')
    expect(error.message).toContain('FRAME_TOO_LARGE')
    await expect(c.request('get_token', { provider: 'a' })).resolves.toEqual(TOKEN)
  })

  test('v1 limits frames to 64 KiB in both directions', async () => {
    const p = await peer({
      legacyToken: LEGACY,
      maxVersion: 1,
      onRequest: (r, c) => c.sendRaw(encodeFrame({ id: r['id'], ok: true, data: { keys: ['x'.repeat(70_000)] } })),
    })
    const c = new ProxySocketClient({ socketPath: p.socketPath, legacyToken: LEGACY })
    cleanups.push(() => c.close())
    expect((await rejection(c.request('list_api_keys', {}))).code).toBe('PROTOCOL_ERROR')
    const token = { ...TOKEN, huge: 'y'.repeat(70_000) }
    expect((await rejection(c.request('save_token', { provider: 'a', token }))).code).toBe('INVALID_REQUEST')
  })

  test('close() rejects pending requests and refuses new ones', async () => {
    const p = await peer({ onRequest: () => undefined })
    const c = client(p)
    const pending = c.request('get_token', { provider: 'a' })
    await vi.waitFor(() => expect(p.requests).toHaveLength(1))
    c.close()
    expect((await rejection(pending)).code).toBe('CONNECTION_FAILED')
    expect(c.state).toBe('CLOSED')
    expect((await rejection(c.request('list_providers', {}))).code).toBe('CONNECTION_FAILED')
  })
})
