// Every operation's success and error paths over a real Unix socket, grants
// (NOT_GRANTED decided from grants alone, runtime changes), and the byte scan:
// host-only token fields never reach the client.
import type { OAuthToken } from '@credproxy/core'
import { afterEach, describe, expect, test } from 'vitest'
import type { OAuthBroker, OAuthInitiateResult, OAuthPollResult } from '../src/oauth/broker.js'
import { StoredCredentialSource } from '../src/credentials/stored-credential-source.js'
import { startServer, TOKEN, type ServerFixture } from './helpers/server-fixture.js'
import { memoryStores, type MemoryKeyStorage, type MemoryTokenStore } from './helpers/server-memory-stores.js'
import type { RawClient } from './helpers/server-raw-client.js'

type Stores = { tokens: MemoryTokenStore; keys: MemoryKeyStorage; backend: 'file' }
let fx: ServerFixture<Stores> | undefined
afterEach(async () => {
  await fx?.cleanup()
  fx = undefined
})

const SECRETS = ['rt-SECRET-never-leaves', 'cs-SECRET-never-leaves', 'dc-SECRET', 'verifier-SECRET']

async function seeded(options: Parameters<typeof startServer<Stores>>[0] = {}): Promise<{ f: ServerFixture<Stores>; c: RawClient }> {
  fx = await startServer<Stores>(options)
  await fx.stores.tokens.saveToken('anthropic', TOKEN)
  await fx.stores.tokens.saveToken('anthropic', { ...TOKEN, access_token: 'at-work' }, 'work')
  await fx.stores.tokens.saveToken('gemini', { ...TOKEN, access_token: 'at-gemini' })
  await fx.stores.keys.saveKey('OPENAI_API_KEY', 'sk-openai')
  await fx.stores.keys.saveKey('OTHER_KEY', 'sk-other')
  return { f: fx, c: await fx.client() }
}

function expectNoHostSecrets(c: RawClient): void {
  const bytes = c.receivedText()
  for (const s of SECRETS) expect(bytes).not.toContain(s)
}

describe('token ops', () => {
  test('get_token answers the sanitized token, keeps provider extras and counts the use', async () => {
    const { f, c } = await seeded()
    const answer = await c.request('get_token', { provider: 'anthropic' })
    expect(answer['ok']).toBe(true)
    expect(answer['data']).toEqual({
      access_token: 'at-visible-1',
      expiry: TOKEN.expiry,
      token_type: 'Bearer',
      scope: 'openid',
      account: 'me@example.com',
    })
    expect((await c.request('get_token', { provider: 'anthropic', bucket: 'work' }))['data']).toMatchObject({
      access_token: 'at-work',
    })
    expect(f.stores.tokens.usage.get('anthropic\u0000default')?.count).toBe(1)
    expectNoHostSecrets(c)
  })

  test('get_token of nothing stored is NOT_FOUND', async () => {
    const { c } = await seeded()
    expect(await c.request('get_token', { provider: 'nobody' })).toMatchObject({ ok: false, code: 'NOT_FOUND' })
  })

  test('save_token strips host-only fields and keeps the stored refresh token', async () => {
    const { f, c } = await seeded()
    const incoming = { access_token: 'at-new', expiry: TOKEN.expiry + 60, token_type: 'Bearer', refresh_token: 'rt-from-sandbox', client_secret: 'cs-from-sandbox' }
    expect(await c.request('save_token', { provider: 'anthropic', token: incoming })).toEqual({ id: expect.any(String), ok: true, data: {} })
    const stored = await f.stores.tokens.getToken('anthropic')
    expect(stored).toMatchObject({ access_token: 'at-new', refresh_token: TOKEN.refresh_token, client_secret: TOKEN.client_secret })
    // Saving for a credential that does not exist yet creates it, without sandbox-supplied host-only fields.
    await c.request('save_token', { provider: 'newprov', token: incoming })
    expect(await f.stores.tokens.getToken('newprov')).toEqual({ access_token: 'at-new', expiry: TOKEN.expiry + 60, token_type: 'Bearer' })
  })

  test('save_token with a token of the wrong shape is INVALID_REQUEST and stores nothing', async () => {
    const { f, c } = await seeded()
    const answer = await c.request('save_token', { provider: 'anthropic', token: { access_token: '', expiry: 'soon' } })
    expect(answer).toMatchObject({ ok: false, code: 'INVALID_REQUEST' })
    expect((await f.stores.tokens.getToken('anthropic'))?.access_token).toBe('at-visible-1')
  })

  test('remove_token removes only that bucket', async () => {
    const { f, c } = await seeded()
    expect(await c.request('remove_token', { provider: 'anthropic', bucket: 'work' })).toMatchObject({ ok: true, data: {} })
    expect(await f.stores.tokens.getToken('anthropic', 'work')).toBeNull()
    expect(await f.stores.tokens.getToken('anthropic')).not.toBeNull()
  })

  test('list_providers, list_buckets and get_bucket_stats', async () => {
    const { c } = await seeded()
    expect((await c.request('list_providers'))['data']).toEqual({ providers: ['anthropic', 'gemini'] })
    expect((await c.request('list_buckets', { provider: 'anthropic' }))['data']).toEqual({ buckets: ['default', 'work'] })
    expect(await c.request('get_bucket_stats', { provider: 'anthropic' })).toMatchObject({ ok: false, code: 'NOT_FOUND' })
    await c.request('get_token', { provider: 'anthropic' })
    await c.request('get_token', { provider: 'anthropic', bucket: 'work' })
    const stats = await c.request('get_bucket_stats', { provider: 'anthropic', bucket: 'work' })
    expect(stats['data']).toMatchObject({ bucket: 'work', requestCount: 1, percentage: 50, lastUsed: expect.any(Number) })
  })

  test('refresh_token without an OAuth broker: the still-valid token, else REFRESH_NOT_AVAILABLE or NOT_FOUND', async () => {
    const { f, c } = await seeded()
    expect((await c.request('refresh_token', { provider: 'anthropic' }))['data']).toMatchObject({ access_token: 'at-visible-1' })
    await f.stores.tokens.saveToken('expired', { ...TOKEN, expiry: 1 })
    expect(await c.request('refresh_token', { provider: 'expired' })).toMatchObject({ ok: false, code: 'REFRESH_NOT_AVAILABLE' })
    expect(await c.request('refresh_token', { provider: 'nobody' })).toMatchObject({ ok: false, code: 'NOT_FOUND' })
    expectNoHostSecrets(c)
  })
})

describe('key ops', () => {
  test('get_api_key, has_api_key, list_api_keys', async () => {
    const { c } = await seeded()
    expect((await c.request('get_api_key', { name: 'OPENAI_API_KEY' }))['data']).toEqual({ key: 'sk-openai' })
    expect(await c.request('get_api_key', { name: 'MISSING' })).toMatchObject({ ok: false, code: 'NOT_FOUND' })
    expect((await c.request('has_api_key', { name: 'OPENAI_API_KEY' }))['data']).toEqual({ exists: true })
    expect((await c.request('has_api_key', { name: 'MISSING' }))['data']).toEqual({ exists: false })
    expect((await c.request('list_api_keys'))['data']).toEqual({ keys: ['OPENAI_API_KEY', 'OTHER_KEY'] })
  })
})

describe('grants', () => {
  const narrow = {
    providers: [{ provider: 'anthropic', buckets: ['default'] }],
    keys: ['OPENAI_API_KEY'],
    capabilities: ['read' as const],
  }

  test('ungranted provider, bucket, key and capability are NOT_GRANTED with the grant to add', async () => {
    const { f, c } = await seeded({ grants: narrow })
    const id = f.server.sessionId
    expect(await c.request('get_token', { provider: 'gemini' })).toMatchObject({
      ok: false,
      code: 'NOT_GRANTED',
      error: `provider gemini is not granted to this session; start it with --grant gemini or run \`credproxy grant --session ${id} --provider gemini\` on the host`,
    })
    expect(await c.request('get_token', { provider: 'anthropic', bucket: 'work' })).toMatchObject({
      code: 'NOT_GRANTED',
      error: expect.stringContaining('--grant anthropic:work'),
    })
    expect(await c.request('get_api_key', { name: 'OTHER_KEY' })).toMatchObject({
      code: 'NOT_GRANTED',
      error: `key OTHER_KEY is not granted to this session; start it with --grant-key OTHER_KEY or run \`credproxy grant --session ${id} --key OTHER_KEY\` on the host`,
    })
    expect(await c.request('has_api_key', { name: 'OTHER_KEY' })).toMatchObject({ code: 'NOT_GRANTED' })
    expect(await c.request('save_token', { provider: 'anthropic', token: { access_token: 'x', expiry: 1, token_type: 'B' } })).toMatchObject({
      code: 'NOT_GRANTED',
      error: expect.stringContaining('capability save'),
    })
    expect(await c.request('oauth_initiate', { provider: 'anthropic' })).toMatchObject({ code: 'NOT_GRANTED' })
    expect((await f.stores.tokens.getToken('anthropic'))?.access_token).toBe('at-visible-1')
  })

  test('the answer depends on grants alone: stored and missing ungranted names look the same', async () => {
    const { c } = await seeded({ grants: narrow })
    const stored = await c.request('get_token', { provider: 'gemini' })
    const missing = await c.request('get_token', { provider: 'nothing-here' })
    expect(stored['code']).toBe('NOT_GRANTED')
    expect(missing['code']).toBe('NOT_GRANTED')
    const storedKey = await c.request('has_api_key', { name: 'OTHER_KEY' })
    const missingKey = await c.request('has_api_key', { name: 'NOPE' })
    expect([storedKey['code'], missingKey['code']]).toEqual(['NOT_GRANTED', 'NOT_GRANTED'])
  })

  test('enumeration shows granted names only', async () => {
    const { c } = await seeded({ grants: narrow })
    expect((await c.request('list_providers'))['data']).toEqual({ providers: ['anthropic'] })
    expect((await c.request('list_buckets', { provider: 'anthropic' }))['data']).toEqual({ buckets: ['default'] })
    expect((await c.request('list_api_keys'))['data']).toEqual({ keys: ['OPENAI_API_KEY'] })
  })

  test('a grant added at runtime works on the next request without reconnecting, and a revoke too', async () => {
    const { f, c } = await seeded({ grants: narrow })
    expect((await c.request('get_token', { provider: 'gemini' }))['code']).toBe('NOT_GRANTED')
    f.server.grants.grant({ providers: [{ provider: 'gemini' }], keys: ['OTHER_KEY'] })
    expect((await c.request('get_token', { provider: 'gemini' }))['data']).toMatchObject({ access_token: 'at-gemini' })
    expect((await c.request('get_api_key', { name: 'OTHER_KEY' }))['data']).toEqual({ key: 'sk-other' })
    f.server.grants.revoke({ providers: [{ provider: 'gemini' }] })
    expect((await c.request('get_token', { provider: 'gemini' }))['code']).toBe('NOT_GRANTED')
  })

  test('session_info (v3) reports session, grants and limits', async () => {
    const { f, c } = await seeded({ grants: narrow })
    const data = (await c.request('session_info'))['data'] as Record<string, unknown>
    expect(data['session']).toBe(f.server.sessionId)
    expect(data['grants']).toEqual({ providers: [{ provider: 'anthropic', buckets: ['default'] }], keys: ['OPENAI_API_KEY'], capabilities: ['read'] })
    expect(data['limits']).toMatchObject({ maxInFlightPerConnection: 16, rateLimitPerSecond: 60 })
  })
})

/** A broker double: the OAuth room builds the real one; this checks what the server does with its answers. */
class RecordingBroker implements OAuthBroker {
  calls: string[] = []
  full: OAuthToken = { ...TOKEN, device_code: 'dc-SECRET', code_verifier: 'verifier-SECRET' }
  async initiate(provider: string, bucket: string, owner: string): Promise<OAuthInitiateResult> {
    this.calls.push(`initiate ${provider} ${bucket} ${owner}`)
    const result = { flow_type: 'device_code' as const, session_id: 'sess_0123456789abcdef', pollIntervalMs: 5000, user_code: 'ABCD-EFGH', verification_uri: 'https://example.test/device' }
    return Object.assign(result, { device_code: 'dc-SECRET' })
  }
  async poll(sessionId: string, owner: string): Promise<OAuthPollResult> {
    this.calls.push(`poll ${sessionId} ${owner}`)
    return this.calls.filter((c) => c.startsWith('poll')).length === 1 ? { status: 'pending', interval: 5 } : { status: 'complete', token: this.full }
  }
  async exchange(sessionId: string, code: string, owner: string): Promise<OAuthToken> {
    this.calls.push(`exchange ${sessionId} ${code} ${owner}`)
    return this.full
  }
  async cancel(sessionId: string, owner: string): Promise<void> {
    this.calls.push(`cancel ${sessionId} ${owner}`)
  }
  async close(): Promise<void> {}
}

/** A credential source double: what the OAuth-refreshing source answers; the server must sanitize it. */
class RecordingCredentials extends StoredCredentialSource {
  constructor(private readonly full: OAuthToken) {
    super(memoryStores())
  }
  override async freshToken(): Promise<OAuthToken | null> {
    return { ...this.full, access_token: 'at-fresh' }
  }
  override async refreshNow(): Promise<OAuthToken> {
    return { ...this.full, access_token: 'at-refreshed' }
  }
}

describe('oauth ops', () => {
  test('without an OAuth broker every oauth_* op is PROVIDER_NOT_CONFIGURED', async () => {
    const { c } = await seeded()
    const sid = { session_id: 'sess_0123456789abcdef' }
    expect(await c.request('oauth_initiate', { provider: 'anthropic' })).toMatchObject({ code: 'PROVIDER_NOT_CONFIGURED' })
    expect(await c.request('oauth_poll', sid)).toMatchObject({ code: 'PROVIDER_NOT_CONFIGURED' })
    expect(await c.request('oauth_exchange', { ...sid, code: 'abc' })).toMatchObject({ code: 'PROVIDER_NOT_CONFIGURED' })
    expect(await c.request('oauth_cancel', sid)).toMatchObject({ code: 'PROVIDER_NOT_CONFIGURED' })
  })

  test('with a broker: flows are owned by the session and every token crossing is sanitized', async () => {
    const oauth = new RecordingBroker()
    const { f, c } = await seeded({ oauth, credentials: new RecordingCredentials(oauth.full) })
    const sid = 'sess_0123456789abcdef'
    const init = await c.request('oauth_initiate', { provider: 'anthropic' })
    expect(init['data']).toEqual({ flow_type: 'device_code', session_id: sid, pollIntervalMs: 5000, user_code: 'ABCD-EFGH', verification_uri: 'https://example.test/device' })
    expect((await c.request('oauth_poll', { session_id: sid }))['data']).toEqual({ status: 'pending', interval: 5 })
    expect((await c.request('oauth_poll', { session_id: sid }))['data']).toMatchObject({ status: 'complete', token: { access_token: 'at-visible-1' } })
    expect((await c.request('oauth_exchange', { session_id: sid, code: 'the-code' }))['data']).toMatchObject({ access_token: 'at-visible-1' })
    expect(await c.request('oauth_cancel', { session_id: sid })).toMatchObject({ ok: true, data: {} })
    expect((await c.request('get_token', { provider: 'anthropic' }))['data']).toMatchObject({ access_token: 'at-fresh' })
    expect((await c.request('refresh_token', { provider: 'anthropic' }))['data']).toMatchObject({ access_token: 'at-refreshed' })
    const owner = f.server.sessionId
    expect(oauth.calls).toContain(`initiate anthropic default ${owner}`)
    expect(oauth.calls).toContain(`exchange ${sid} the-code ${owner}`)
    expectNoHostSecrets(c)
  })

  test('broker errors cross with their code and the fixed message only', async () => {
    const oauth = new RecordingBroker()
    const { ProxyError, safeMessage } = await import('@credproxy/core')
    oauth.poll = async () => {
      throw new ProxyError('SESSION_EXPIRED', 'raw library text with rt-SECRET-never-leaves')
    }
    const credentials = new RecordingCredentials(oauth.full)
    credentials.refreshNow = async () => {
      throw new ProxyError('RATE_LIMITED', 'cooling down', { retryAfter: 12 })
    }
    const { c } = await seeded({ oauth, credentials })
    expect(await c.request('oauth_poll', { session_id: 'sess_0123456789abcdef' })).toMatchObject({
      code: 'SESSION_EXPIRED',
      error: safeMessage('SESSION_EXPIRED'),
    })
    expect(await c.request('refresh_token', { provider: 'anthropic' })).toMatchObject({ code: 'RATE_LIMITED', retryAfter: 12 })
    expectNoHostSecrets(c)
  })
})

describe('handler failures', () => {
  test('a store that throws gives INTERNAL_ERROR with the fixed message; the raw error goes to the host log only', async () => {
    const { f, c } = await seeded()
    f.stores.tokens.failWith = new Error('disk on fire at /home/u/.secret rt-SECRET-never-leaves')
    const answer = await c.request('get_token', { provider: 'anthropic' })
    expect(answer).toMatchObject({ ok: false, code: 'INTERNAL_ERROR', error: 'The broker failed while handling the request; details are in the host log.' })
    expect(c.receivedText()).not.toContain('disk on fire')
    expect(f.logs.some((l) => l.includes('disk on fire'))).toBe(true)
    f.stores.tokens.failWith = undefined
    expect(await c.request('get_token', { provider: 'anthropic' })).toMatchObject({ ok: true })
  })

  test('every request is audited with op, names, outcome and duration, never a secret', async () => {
    const { f, c } = await seeded({ grants: { providers: [{ provider: 'anthropic' }], keys: ['OPENAI_API_KEY'], capabilities: ['read'] } })
    await c.request('get_token', { provider: 'anthropic', bucket: 'work' })
    await c.request('get_api_key', { name: 'OPENAI_API_KEY' })
    await c.request('get_token', { provider: 'gemini' })
    const requests = f.audit.filter((e) => e.event === 'request')
    expect(requests).toEqual([
      expect.objectContaining({ op: 'get_token', provider: 'anthropic', bucket: 'work', outcome: 'ok', durationMs: expect.any(Number), session: f.server.sessionId, protocolVersion: 3 }),
      expect.objectContaining({ op: 'get_api_key', key: 'OPENAI_API_KEY', outcome: 'ok' }),
      expect.objectContaining({ op: 'get_token', provider: 'gemini', outcome: 'NOT_GRANTED' }),
    ])
    const text = JSON.stringify(f.audit)
    for (const s of [...SECRETS, 'sk-openai', 'at-visible-1', f.secret.toString('hex')]) expect(text).not.toContain(s)
  })
})
