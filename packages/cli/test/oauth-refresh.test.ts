import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { ProxyError, type OAuthToken } from '@credproxy/core'
import { createOAuthBroker, type HostOAuth } from '../src/credentials/host-oauth.js'
import { createClientConfiguration } from '../src/oauth/oauth-client.js'
import { RefreshCoordinator } from '../src/oauth/refresh-coordinator.js'
import { refreshTokenGrant } from '../src/oauth/refresh-grant.js'
import { openHostStores } from '../src/storage/index.js'
import type { HostTokenStore } from '../src/storage/types.js'
import { startAuthServer, type AuthServer } from './helpers/auth-server.js'
import { deviceLogin } from './helpers/oauth-login.js'
import { createOAuthTestEnv, type OAuthTestEnv } from './helpers/oauth-env.js'

const P = 'testprov'

describe('refresh against a real authorization server', () => {
  let as: AuthServer
  let t: OAuthTestEnv
  let broker: HostOAuth

  beforeAll(async () => {
    as = await startAuthServer({ accessTokenTtlSeconds: 60 })
    t = await createOAuthTestEnv(as)
    const created = await createOAuthBroker({ stores: t.stores, env: t.env, schedule: false, refresh: { backoffBaseMs: 5 } })
    if (created === null) throw new Error('no providers.json')
    broker = created
  })
  afterAll(async () => {
    await broker.close()
    await as.close()
    await t.cleanup()
  })

  async function expire(bucket: string): Promise<OAuthToken> {
    const token = await t.stores.tokens.updateToken(P, bucket, (current) => (current === null ? null : { ...current, expiry: Math.floor(Date.now() / 1000) - 5 }))
    if (token === null) throw new Error('no token to expire')
    return token
  }

  test('200 concurrent get_token calls on an expired token cause exactly one refresh', async () => {
    await deviceLogin(broker, as, P, 'stampede')
    const old = await expire('stampede')
    const before = as.refreshRequests
    const results = await Promise.all(Array.from({ length: 200 }, () => broker.credentials.freshToken(P, 'stampede')))
    expect(as.refreshRequests - before).toBe(1)
    const fresh = results[0]
    expect(fresh?.access_token).not.toBe(old.access_token)
    for (const r of results) {
      expect(r?.access_token).toBe(fresh?.access_token)
      expect(r?.expiry).toBeGreaterThan(Date.now() / 1000 + 30)
    }
  })

  test('two brokers on the same store (cross-process lock, re-read) refresh once', async () => {
    await deviceLogin(broker, as, P, 'two-hosts')
    await expire('two-hosts')
    const otherStores = await openHostStores({ env: t.env, paths: t.paths, log: () => undefined })
    const other = await createOAuthBroker({ stores: otherStores, env: t.env, schedule: false })
    const before = as.refreshRequests
    const [a, b] = await Promise.all([broker.credentials.freshToken(P, 'two-hosts'), other?.credentials.freshToken(P, 'two-hosts')])
    await other?.close()
    expect(as.refreshRequests - before).toBe(1)
    expect(a?.access_token).toBe(b?.access_token)
  })

  test('rotation: the old refresh token is never sent again and the grant stays valid', async () => {
    const first = await deviceLogin(broker, as, P, 'rotation')
    const coordinator = new RefreshCoordinator({
      tokens: t.stores.tokens,
      grant: async (_provider, rt) => refreshTokenGrant(await createClientConfiguration(broker.logins.provider(P)), rt, Date.now()),
      cooldownMs: 0,
    })
    const seen: string[] = []
    for (let i = 0; i < 3; i += 1) {
      const stored = await t.stores.tokens.getToken(P, 'rotation')
      seen.push(stored?.refresh_token ?? '')
      await coordinator.refresh(P, 'rotation', { force: true })
    }
    const last = await t.stores.tokens.getToken(P, 'rotation')
    expect(new Set(seen).size).toBe(3)
    expect(seen[0]).toBe(first.refresh_token)
    expect(seen).not.toContain(last?.refresh_token)
    const sent = as.refreshTokensSent.filter((rt) => seen.includes(rt) || rt === last?.refresh_token)
    expect(sent).toEqual(seen)
    // A reused token would have revoked the grant; one more refresh still works.
    await expect(coordinator.refresh(P, 'rotation', { force: true })).resolves.toMatchObject({ token_type: 'Bearer' })
  })

  test('a revoked grant gives REAUTH_REQUIRED naming `credproxy auth login <provider>`, cached briefly', async () => {
    const token = await deviceLogin(broker, as, P, 'revoked')
    await as.revokeGrant(token.refresh_token ?? '')
    // Still valid: the refresh fails, but the working token is returned instead of an error.
    const forced = await broker.credentials.refreshNow(P, 'revoked').catch((e: unknown) => e)
    expect(forced).toBeInstanceOf(ProxyError)
    expect((forced as ProxyError).code).toBe('REAUTH_REQUIRED')
    expect((forced as ProxyError).message).toContain('credproxy auth login testprov --bucket revoked')
    await expire('revoked')
    const before = as.refreshRequests
    const error = (await broker.credentials.freshToken(P, 'revoked').catch((e: unknown) => e)) as ProxyError
    expect(error.code).toBe('REAUTH_REQUIRED')
    // Negative cache: the failure is remembered; the server is not asked again right away.
    expect(as.refreshRequests).toBe(before)
    // The stored credential is kept (nothing lost); only a new login replaces it.
    expect((await t.stores.tokens.getToken(P, 'revoked'))?.refresh_token).toBe(token.refresh_token)
  })

  test('a revoked grant on the default bucket names the plain login command', async () => {
    const token = await deviceLogin(broker, as, P, 'default')
    await as.revokeGrant(token.refresh_token ?? '')
    await expire('default')
    const error = (await broker.credentials.freshToken(P, 'default').catch((e: unknown) => e)) as ProxyError
    expect(error.code).toBe('REAUTH_REQUIRED')
    expect(error.message).toContain('`credproxy auth login testprov`')
  })

  test('cooldown: a second refresh right after one returns the still-valid token without a request', async () => {
    await deviceLogin(broker, as, P, 'cooldown')
    const first = await broker.credentials.refreshNow(P, 'cooldown')
    const before = as.refreshRequests
    const second = await broker.credentials.refreshNow(P, 'cooldown')
    expect(as.refreshRequests).toBe(before)
    expect(second.access_token).toBe(first.access_token)
  })

  test('5xx answers are retried with backoff; a lasting outage gives REFRESH_FAILED and keeps the token', async () => {
    await deviceLogin(broker, as, P, 'flaky')
    const old = await expire('flaky')
    as.failTokenEndpoint(2, 503)
    const fresh = await broker.credentials.freshToken(P, 'flaky')
    expect(fresh?.access_token).not.toBe(old.access_token)

    await deviceLogin(broker, as, P, 'down')
    const stored = await expire('down')
    as.failTokenEndpoint(10, 502)
    const error = (await broker.credentials.freshToken(P, 'down').catch((e: unknown) => e)) as ProxyError
    as.failTokenEndpoint(0)
    expect(error.code).toBe('REFRESH_FAILED')
    expect((await t.stores.tokens.getToken(P, 'down'))?.refresh_token).toBe(stored.refresh_token)
  })

  /**
   * The real file store with one method replaced: updateToken fails while `failWrites` > 0.
   * A test double on purpose: a lock timeout or disk error at exactly that write cannot be caused otherwise.
   */
  function failingWrites(): { tokens: HostTokenStore; failWrites: { count: number } } {
    const failWrites = { count: 0 }
    const real = t.stores.tokens
    const tokens = new Proxy(real, {
      get(target, prop) {
        if (prop === 'updateToken') {
          return (...args: Parameters<HostTokenStore['updateToken']>) => {
            if (failWrites.count > 0) {
              failWrites.count -= 1
              return Promise.reject(new Error('timed out waiting for the write lock'))
            }
            return real.updateToken(...args)
          }
        }
        const value: unknown = Reflect.get(target, prop)
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value
      },
    })
    return { tokens, failWrites }
  }

  test('a refreshed token whose save fails is served, its write retried, the old refresh token never sent again', async () => {
    const login = await deviceLogin(broker, as, P, 'unsaved')
    const old = await expire('unsaved')
    const { tokens, failWrites } = failingWrites()
    const logs: string[] = []
    const other = await createOAuthBroker({ stores: { ...t.stores, tokens }, env: t.env, schedule: false, refresh: { cooldownMs: 0 }, log: (l) => logs.push(l) })
    if (other === null) throw new Error('no providers.json')
    const sentFrom = as.refreshTokensSent.length
    try {
      failWrites.count = 1
      const fresh = await other.credentials.freshToken(P, 'unsaved')
      expect(fresh?.access_token).not.toBe(old.access_token)
      expect(as.refreshTokensSent.slice(sentFrom)).toEqual([login.refresh_token])
      expect((await t.stores.tokens.getToken(P, 'unsaved'))?.access_token).toBe(old.access_token)
      expect(logs.join('\n')).toContain('WARNING: saving the refreshed token failed')
      expect(logs.join('\n')).not.toContain(fresh?.access_token ?? '-')

      // The next call serves the new token without a request, and its retry writes it.
      const again = await other.credentials.freshToken(P, 'unsaved')
      expect(again?.access_token).toBe(fresh?.access_token)
      expect(as.refreshTokensSent.length - sentFrom).toBe(1)
      const stored = await t.stores.tokens.getToken(P, 'unsaved')
      expect(stored?.access_token).toBe(fresh?.access_token)
      expect(stored?.refresh_token).not.toBe(login.refresh_token)

      // The grant is intact (a reused refresh token would have revoked it) and the spent token stays unsent.
      await expect(other.credentials.refreshNow(P, 'unsaved')).resolves.toMatchObject({ token_type: 'Bearer' })
      expect(as.refreshTokensSent.slice(sentFrom)).toEqual([login.refresh_token, stored?.refresh_token])
    } finally {
      await other.close()
    }
  })

  test('a refreshed token still unsaved when the broker stops gets one last write on close(), or a clear ERROR naming the login', async () => {
    for (const [bucket, failures] of [['unsaved-close', 1], ['unsaved-close-fail', 2]] as const) {
      await deviceLogin(broker, as, P, bucket)
      const old = await expire(bucket)
      const { tokens, failWrites } = failingWrites()
      const logs: string[] = []
      const other = await createOAuthBroker({ stores: { ...t.stores, tokens }, env: t.env, schedule: false, refresh: { cooldownMs: 0 }, log: (l) => logs.push(l) })
      if (other === null) throw new Error('no providers.json')
      // The refresh's save fails; with 2 failures the write on close() fails too.
      failWrites.count = failures
      const fresh = await other.credentials.freshToken(P, bucket)
      expect((await t.stores.tokens.getToken(P, bucket))?.access_token).toBe(old.access_token)
      await other.close()
      const stored = await t.stores.tokens.getToken(P, bucket)
      if (failures === 1) {
        expect(stored?.access_token).toBe(fresh?.access_token)
        expect(logs.join('\n')).toContain('the refreshed token is saved now, on shutdown')
      } else {
        expect(stored?.access_token).toBe(old.access_token)
        expect(logs.join('\n')).toContain(`ERROR: the refreshed token could not be saved before the broker stopped`)
        expect(logs.join('\n')).toContain(`run \`credproxy auth login ${P} --bucket ${bucket}\` on the host`)
      }
      expect(logs.join('\n')).not.toContain(fresh?.access_token ?? '-')
    }
  })

  test('the last write on close() is bounded: a write that never finishes is given up with an ERROR', async () => {
    await t.stores.tokens.saveToken(P, { access_token: 'h1', refresh_token: 'r1', expiry: 1, token_type: 'Bearer' }, 'hang')
    const hang = { on: true }
    const tokens = new Proxy(t.stores.tokens, {
      get(target, prop) {
        // First save fails (the token stays unsaved), the last write never settles.
        if (prop === 'updateToken') return () => (hang.on ? new Promise<never>(() => undefined) : Promise.reject(new Error('disk full')))
        const value: unknown = Reflect.get(target, prop)
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value
      },
    })
    const logs: string[] = []
    const coordinator = new RefreshCoordinator({
      tokens,
      grant: () => Promise.resolve({ access_token: 'h2', refresh_token: 'r2', expiry: Math.floor(Date.now() / 1000) + 3600, token_type: 'Bearer' }),
      log: (l) => logs.push(l),
    })
    hang.on = false
    await coordinator.refresh(P, 'hang')
    expect(coordinator.unsavedToken(P, 'hang')?.access_token).toBe('h2')
    hang.on = true
    await coordinator.flushUnsaved(20)
    expect(logs.join('\n')).toContain('ERROR: the refreshed token could not be saved before the broker stopped (timed out after 20 ms)')
  })

  test('while a refreshed token is unsaved, the next refresh sends its refresh token, not the stored spent one', async () => {
    const login = await deviceLogin(broker, as, P, 'unsaved-twice')
    await expire('unsaved-twice')
    const { tokens, failWrites } = failingWrites()
    const other = await createOAuthBroker({ stores: { ...t.stores, tokens }, env: t.env, schedule: false, refresh: { cooldownMs: 0 } })
    if (other === null) throw new Error('no providers.json')
    const sentFrom = as.refreshTokensSent.length
    try {
      // Every write fails: the first refresh's save, the retry before the forced refresh, and that refresh's save.
      failWrites.count = 3
      const first = await other.credentials.freshToken(P, 'unsaved-twice')
      const second = await other.credentials.refreshNow(P, 'unsaved-twice')
      expect(second.access_token).not.toBe(first?.access_token)
      const sent = as.refreshTokensSent.slice(sentFrom)
      expect(sent).toHaveLength(2)
      expect(sent[0]).toBe(login.refresh_token)
      expect(sent[1]).not.toBe(login.refresh_token)
      expect((await t.stores.tokens.getToken(P, 'unsaved-twice'))?.refresh_token).toBe(login.refresh_token)
      // Writes work again: the next call stores the newest token.
      await expect(other.credentials.freshToken(P, 'unsaved-twice')).resolves.toMatchObject({ access_token: second.access_token })
      expect((await t.stores.tokens.getToken(P, 'unsaved-twice'))?.access_token).toBe(second.access_token)
      expect(as.refreshTokensSent.slice(sentFrom)).toHaveLength(2)
    } finally {
      await other.close()
    }
  })

  test('a refresh response without refresh_token keeps the stored one', async () => {
    await t.stores.tokens.saveToken(P, { access_token: 'a1', refresh_token: 'keep-me', expiry: 1, token_type: 'Bearer' }, 'norotate')
    const coordinator = new RefreshCoordinator({
      tokens: t.stores.tokens,
      grant: () => Promise.resolve({ access_token: 'a2', expiry: Math.floor(Date.now() / 1000) + 3600, token_type: 'Bearer' }),
    })
    const fresh = await coordinator.refresh(P, 'norotate')
    expect(fresh).toMatchObject({ access_token: 'a2', refresh_token: 'keep-me' })
    expect((await t.stores.tokens.getToken(P, 'norotate'))?.refresh_token).toBe('keep-me')
  })
})
