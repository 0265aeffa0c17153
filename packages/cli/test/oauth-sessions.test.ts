// OAuthSessionManager rules (binding, single use, expiry, cap) and error
// classification. The flows here are in-memory LoginFlow objects: the rules under
// test are the manager's own; the real flows run against oidc-provider in oauth-broker.test.ts.
import { describe, expect, test } from 'vitest'
import { ProxyError, type OAuthToken } from '@credproxy/core'
import { ResponseBodyError } from 'openid-client'
import { classifyOAuthError } from '../src/oauth/classify-error.js'
import type { CredproxyError } from '../src/errors.js'
import type { LoginFlow } from '../src/oauth/login-flow.js'
import { parseProvidersConfig } from '../src/oauth/provider-config.js'
import { FINISHED_SESSION_RETENTION_MS, MAX_OAUTH_SESSIONS, OAUTH_SESSION_TTL_MS, OAuthSessionManager } from '../src/oauth/session-manager.js'

const TOKEN: OAuthToken = { access_token: 'at', refresh_token: 'rt', expiry: 2_000_000_000, token_type: 'Bearer' }

function controllableFlow(): LoginFlow & { finish(token: OAuthToken): void; fail(error: unknown): void; aborted: boolean } {
  let resolve!: (t: OAuthToken) => void
  let reject!: (e: unknown) => void
  const result = new Promise<OAuthToken>((res, rej) => {
    resolve = res
    reject = rej
  })
  result.catch(() => undefined)
  const flow = {
    display: { flow_type: 'device_code' as const, pollIntervalMs: 50, user_code: 'ABCD-EFGH', verification_uri: 'https://as.example/device' },
    result,
    aborted: false,
    slowedDownInterval: () => undefined,
    exchange: () => Promise.reject(new ProxyError('EXCHANGE_FAILED')),
    abort() {
      flow.aborted = true
      reject(new ProxyError('CANCELLED'))
    },
    finish: (t: OAuthToken) => resolve(t),
    fail: (e: unknown) => reject(e),
  }
  return flow
}

function setup(now = { t: 1_000_000 }) {
  const flows: ReturnType<typeof controllableFlow>[] = []
  const stored: OAuthToken[] = []
  const manager = new OAuthSessionManager({
    startFlow: () => {
      const flow = controllableFlow()
      flows.push(flow)
      return Promise.resolve(flow)
    },
    storeToken: (_p, _b, token) => {
      stored.push(token)
      return Promise.resolve(token)
    },
    now: () => now.t,
    sweepTimer: false,
    // The rate limits have their own tests (oauth-hardening.test.ts); these test the other rules.
    rateLimits: { loginsPerOwner: 1_000, providerRequests: 1_000 },
  })
  return { manager, flows, stored, now }
}

const tick = () => new Promise((resolve) => setImmediate(resolve))

describe('OAuthSessionManager', () => {
  test('session ids are 128-bit base64url and unique', async () => {
    const { manager } = setup()
    const ids = new Set<string>()
    for (let i = 0; i < 20; i += 1) ids.add((await manager.initiate('p', 'default', `o${i}`)).session_id)
    expect(ids.size).toBe(20)
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/)
    manager.close()
  })

  test('poll never blocks: pending, then complete once (stored first), then SESSION_ALREADY_USED', async () => {
    const { manager, flows, stored } = setup()
    const { session_id, user_code } = await manager.initiate('p', 'default', 'owner')
    expect(user_code).toBe('ABCD-EFGH')
    expect(manager.poll(session_id, 'owner')).toEqual({ status: 'pending' })
    flows[0]?.finish(TOKEN)
    await tick()
    expect(stored).toEqual([TOKEN])
    expect(manager.poll(session_id, 'owner')).toEqual({ status: 'complete', token: TOKEN })
    expect(() => manager.poll(session_id, 'owner')).toThrow(expect.objectContaining({ code: 'SESSION_ALREADY_USED' }))
  })

  test('another owner cannot see, poll or cancel a session', async () => {
    const { manager, flows } = setup()
    const { session_id } = await manager.initiate('p', 'default', 'owner')
    expect(() => manager.poll(session_id, 'intruder')).toThrow(expect.objectContaining({ code: 'SESSION_NOT_FOUND' }))
    expect(() => manager.cancel(session_id, 'intruder')).toThrow(expect.objectContaining({ code: 'SESSION_NOT_FOUND' }))
    expect(flows[0]?.aborted).toBe(false)
    expect(() => manager.poll('AAAAAAAAAAAAAAAAAAAAAA', 'owner')).toThrow(expect.objectContaining({ code: 'SESSION_NOT_FOUND' }))
  })

  test('a login expires after 10 minutes: SESSION_EXPIRED, task aborted, then swept', async () => {
    const { manager, flows, now } = setup()
    const { session_id } = await manager.initiate('p', 'default', 'owner')
    now.t += OAUTH_SESSION_TTL_MS - 1
    expect(manager.poll(session_id, 'owner').status).toBe('pending')
    now.t += 1
    expect(() => manager.poll(session_id, 'owner')).toThrow(expect.objectContaining({ code: 'SESSION_EXPIRED' }))
    expect(flows[0]?.aborted).toBe(true)
    now.t += 120_000
    manager.sweep()
    expect(manager.size).toBe(0)
  })

  test('the number of sessions is capped: RESOURCE_EXHAUSTED, and room again after expiry', async () => {
    const { manager, now } = setup()
    for (let i = 0; i < MAX_OAUTH_SESSIONS; i += 1) await manager.initiate('p', 'default', 'owner')
    await expect(manager.initiate('p', 'default', 'owner')).rejects.toMatchObject({ code: 'RESOURCE_EXHAUSTED' })
    now.t += OAUTH_SESSION_TTL_MS + 120_000
    await expect(manager.initiate('p', 'default', 'owner')).resolves.toMatchObject({ flow_type: 'device_code' })
  })

  test('concurrent initiates reserve their slot before the flow starts: at most the cap reach startFlow', async () => {
    let started = 0
    const pending: Array<() => void> = []
    const manager = new OAuthSessionManager({
      startFlow: () => {
        started += 1
        return new Promise((resolve) => pending.push(() => resolve(controllableFlow())))
      },
      storeToken: (_p, _b, token) => Promise.resolve(token),
      maxSessions: 4,
      sweepTimer: false,
    })
    const all = Array.from({ length: 9 }, (_, i) => manager.initiate('p', `b${i}`, 'owner'))
    expect(started).toBe(4)
    for (const release of pending) release()
    const results = await Promise.allSettled(all)
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(4)
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'RESOURCE_EXHAUSTED' })
    manager.close()
  })

  test('cancelled and collected sessions keep no slot: a new login starts at once, and they are forgotten after the retention', async () => {
    const { manager, flows, now } = setup()
    const ids: string[] = []
    for (let i = 0; i < MAX_OAUTH_SESSIONS; i += 1) ids.push((await manager.initiate('p', 'default', 'owner')).session_id)
    flows[0]?.finish(TOKEN)
    await tick()
    expect(manager.poll(ids[0] ?? '', 'owner')).toMatchObject({ status: 'complete' })
    for (const id of ids.slice(1)) manager.cancel(id, 'owner')
    // A used session is still answered precisely while there is room...
    expect(() => manager.poll(ids[1] ?? '', 'owner')).toThrow(expect.objectContaining({ code: 'SESSION_ALREADY_USED' }))
    await expect(manager.initiate('p', 'default', 'owner')).resolves.toMatchObject({ flow_type: 'device_code' })
    // ...and all of them are gone one retention after their use, long before their expiry.
    now.t += FINISHED_SESSION_RETENTION_MS
    manager.sweep()
    expect(manager.size).toBe(1)
    manager.close()
  })

  test('cancel aborts the background task and the id cannot be used again', async () => {
    const { manager, flows, stored } = setup()
    const { session_id } = await manager.initiate('p', 'default', 'owner')
    manager.cancel(session_id, 'owner')
    expect(flows[0]?.aborted).toBe(true)
    await tick()
    expect(stored).toEqual([])
    expect(() => manager.poll(session_id, 'owner')).toThrow(expect.objectContaining({ code: 'SESSION_ALREADY_USED' }))
  })

  test('a denied login reports ACCESS_DENIED and stores nothing', async () => {
    const { manager, flows, stored } = setup()
    const { session_id } = await manager.initiate('p', 'default', 'owner')
    flows[0]?.fail(new ProxyError('ACCESS_DENIED'))
    await tick()
    expect(() => manager.poll(session_id, 'owner')).toThrow(expect.objectContaining({ code: 'ACCESS_DENIED' }))
    expect(stored).toEqual([])
  })
})

describe('classifyOAuthError', () => {
  const body = (error: string, status: number) =>
    new ResponseBodyError('oauth error', { cause: { error }, response: new Response(null, { status }) })

  test.each([
    ['authorization_pending', 400, 'pending'],
    ['slow_down', 400, 'slow_down'],
    ['access_denied', 400, 'denied'],
    ['expired_token', 400, 'expired'],
    ['invalid_grant', 400, 'invalid_grant'],
    ['temporarily_unavailable', 503, 'transient'],
    ['invalid_client', 401, 'fatal'],
    ['something_new', 502, 'transient'],
  ])('OAuth error %s (HTTP %d) is %s', (error, status, kind) => {
    expect(classifyOAuthError(body(error, status)).kind).toBe(kind)
  })

  test('network failures are transient; unknown errors are fatal', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
    expect(classifyOAuthError(new TypeError('fetch failed', { cause: refused })).kind).toBe('transient')
    expect(classifyOAuthError(new Error('weird')).kind).toBe('fatal')
  })
})

describe('providers.json', () => {
  test('a bad field is a fatal error naming the file and the field', () => {
    expect(() => parseProvidersConfig(JSON.stringify({ providers: { x: { issuer: 'https://a.example' } } }), '/cfg/providers.json')).toThrow(
      /\/cfg\/providers\.json: invalid field providers\.x\.client_id/,
    )
    expect(() =>
      parseProvidersConfig(JSON.stringify({ providers: { x: { issuer: 'https://a.example', client_id: 'c', flows: ['magic'] } } }), '/p.json'),
    ).toThrow(/invalid field providers\.x\.flows\.0/)
    expect(() => parseProvidersConfig('{', '/p.json')).toThrow(/\/p\.json is not valid JSON/)
  })

  test('a JSON syntax error names the position, never the text around it (it may be the client secret)', () => {
    const secret = 'CLIENT-SECRET-5f2e9a'
    // An unquoted secret and a missing comma after a quoted one: the two shapes of V8's message.
    const unquoted = `{"providers":{"x":{"client_id":"c",\n"client_secret":${secret}}}}`
    const missingComma = `{"providers":{"x":{"client_secret":"${secret}" "client_id":"c"}}}`
    for (const text of [unquoted, missingComma]) {
      let message = ''
      try {
        parseProvidersConfig(text, '/p.json')
      } catch (error) {
        message = `${(error as Error).message} ${(error as CredproxyError).hint ?? ''}`
      }
      expect(message).toMatch(/\/p\.json is not valid JSON/)
      expect(message).not.toContain(secret.slice(0, 8))
    }
    expect(() => parseProvidersConfig(missingComma, '/p.json')).toThrow(/line 1, column 59/)
  })

  test('explicit endpoints are accepted when they cover the allowed flows', () => {
    const config = parseProvidersConfig(
      JSON.stringify({
        providers: { corp: { token_endpoint: 'https://a.example/token', device_authorization_endpoint: 'https://a.example/device', client_id: 'c', flows: ['device_code'] } },
      }),
      '/p.json',
    )
    expect(config.providers.get('corp')?.flows).toEqual(['device_code'])
    expect(() =>
      parseProvidersConfig(JSON.stringify({ providers: { corp: { token_endpoint: 'https://a.example/token', client_id: 'c', flows: ['pkce'] } } }), '/p.json'),
    ).toThrow(/authorization_endpoint/)
  })
})
