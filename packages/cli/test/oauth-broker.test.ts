import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { ProxyError, type OAuthToken } from '@credproxy/core'
import { createOAuthBroker, type HostOAuth } from '../src/credentials/host-oauth.js'
import { MAX_OAUTH_SESSIONS } from '../src/oauth/session-manager.js'
import { startAuthServer, type AuthServer } from './helpers/auth-server.js'
import { createOAuthTestEnv, type OAuthTestEnv } from './helpers/oauth-env.js'

const OWNER = 'session-a'

async function pollUntilDone(broker: HostOAuth, id: string, owner = OWNER): Promise<OAuthToken> {
  for (let i = 0; i < 400; i += 1) {
    const r = await broker.logins.poll(id, owner)
    if (r.status === 'complete') return r.token
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  throw new Error('login did not complete')
}

describe('host OAuth broker against a real authorization server', () => {
  let as: AuthServer
  let t: OAuthTestEnv
  let broker: HostOAuth

  beforeAll(async () => {
    as = await startAuthServer()
    t = await createOAuthTestEnv(as)
    const created = await createOAuthBroker({ stores: t.stores, env: t.env })
    if (created === null) throw new Error('providers.json was not found')
    broker = created
  })
  afterAll(async () => {
    await broker.close()
    await as.close()
    await t.cleanup()
  })

  test('device-code login: user code shown at once, token stored on the host after approval', async () => {
    const init = await broker.logins.initiate('testprov', 'default', OWNER)
    expect(init.flow_type).toBe('device_code')
    expect(init.user_code).toMatch(/\S/)
    expect(init.verification_uri).toBe(`${as.issuer}/device`)
    expect(await broker.logins.poll(init.session_id, OWNER)).toEqual({ status: 'pending' })
    await as.approveDevice(init.user_code ?? '')
    const token = await pollUntilDone(broker, init.session_id)
    expect(token.access_token).toMatch(/\S/)
    expect(token.refresh_token).toMatch(/\S/)
    const stored = await t.stores.tokens.getToken('testprov', 'default')
    expect(stored?.access_token).toBe(token.access_token)
    expect(stored?.refresh_token).toBe(token.refresh_token)
    // Single-use: the token is handed out once.
    await expect(broker.logins.poll(init.session_id, OWNER)).rejects.toMatchObject({ code: 'SESSION_ALREADY_USED' })
  })

  test('device-code login denied by the user gives ACCESS_DENIED', async () => {
    const init = await broker.logins.initiate('testprov', 'denied', OWNER)
    await as.denyDevice(init.user_code ?? '')
    const error = await pollUntilDone(broker, init.session_id).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ProxyError)
    expect((error as ProxyError).code).toBe('ACCESS_DENIED')
    expect(await t.stores.tokens.getToken('testprov', 'denied')).toBeNull()
  })

  test('PKCE login through the loopback redirect stores a token with a refresh token', async () => {
    const init = await broker.logins.initiate('testprov', 'pkce', OWNER, { flow: 'pkce' })
    expect(init.flow_type).toBe('pkce_redirect')
    const authUrl = new URL(init.auth_url ?? '')
    expect(authUrl.searchParams.get('code_challenge_method')).toBe('S256')
    expect(authUrl.searchParams.get('redirect_uri')).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/callback$/)
    const redirect = await as.completeAuthorization(init.auth_url ?? '')
    const browser = await fetch(redirect)
    expect(browser.status).toBe(200)
    expect(await browser.text()).toMatch(/Login complete/)
    const token = await pollUntilDone(broker, init.session_id)
    expect(token.refresh_token).toMatch(/\S/)
    expect((await t.stores.tokens.getToken('testprov', 'pkce'))?.access_token).toBe(token.access_token)
  })

  test('PKCE paste-the-code fallback exchanges with the same verifier', async () => {
    const init = await broker.logins.initiate('testprov', 'paste', OWNER, { flow: 'pkce' })
    const redirect = new URL(await as.completeAuthorization(init.auth_url ?? ''))
    // A code from another login's redirect is refused; the real one works.
    await expect(broker.logins.exchange(init.session_id, 'not-a-real-code', OWNER)).rejects.toMatchObject({ code: 'EXCHANGE_FAILED' })
    const token = await broker.logins.exchange(init.session_id, redirect.searchParams.get('code') ?? '', OWNER)
    expect(token.refresh_token).toMatch(/\S/)
    expect((await t.stores.tokens.getToken('testprov', 'paste'))?.access_token).toBe(token.access_token)
    await expect(broker.logins.exchange(init.session_id, 'x', OWNER)).rejects.toMatchObject({ code: 'SESSION_ALREADY_USED' })
  })

  test('a login session is invisible to another broker session', async () => {
    const init = await broker.logins.initiate('testprov', 'other', OWNER)
    await expect(broker.logins.poll(init.session_id, 'session-b')).rejects.toMatchObject({ code: 'SESSION_NOT_FOUND' })
    await expect(broker.logins.cancel(init.session_id, 'session-b')).rejects.toMatchObject({ code: 'SESSION_NOT_FOUND' })
    await broker.logins.cancel(init.session_id, OWNER)
    await expect(broker.logins.poll(init.session_id, OWNER)).rejects.toMatchObject({ code: 'SESSION_ALREADY_USED' })
  })

  test('concurrent initiates over the cap never reach the provider, and cancelled logins free their slots at once', async () => {
    // The login rate limits are tested in oauth-hardening.test.ts; here only the session cap.
    const capped = await createOAuthBroker({ stores: t.stores, env: t.env, schedule: false, loginRateLimits: { loginsPerOwner: 1_000 } })
    if (capped === null) throw new Error('providers.json was not found')
    try {
      const before = as.deviceAuthorizationRequests
      const results = await Promise.allSettled(
        Array.from({ length: MAX_OAUTH_SESSIONS + 5 }, (_, i) => capped.logins.initiate('testprov', `cap${i}`, OWNER)),
      )
      const started = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value.session_id] : []))
      const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []))
      expect(started).toHaveLength(MAX_OAUTH_SESSIONS)
      expect(refused).toHaveLength(5)
      for (const error of refused) expect(error).toMatchObject({ code: 'RESOURCE_EXHAUSTED' })
      // The refused ones were refused before any network round trip.
      expect(as.deviceAuthorizationRequests - before).toBe(MAX_OAUTH_SESSIONS)
      for (const id of started) await capped.logins.cancel(id, OWNER)
      const again = await capped.logins.initiate('testprov', 'again', OWNER)
      expect(again.flow_type).toBe('device_code')
    } finally {
      await capped.close()
    }
  })

  test('an unknown provider gives PROVIDER_NOT_CONFIGURED naming providers.json', async () => {
    const error = (await broker.logins.initiate('nope', 'default', OWNER).catch((e: unknown) => e)) as ProxyError
    expect(error.code).toBe('PROVIDER_NOT_CONFIGURED')
    expect(error.message).toContain('providers.json')
  })
})
