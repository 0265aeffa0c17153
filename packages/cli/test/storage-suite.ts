// The behaviour every host storage backend must show. storage-file.test.ts and
// storage-keyring.test.ts run it against the encrypted files and a real Secret Service.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ProxyError, type OAuthToken } from '@credproxy/core'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { withRefreshLock } from '../src/oauth/refresh-lock.js'
import { LockTimeoutError, openHostStores } from '../src/storage/index.js'
import type { BackendName, HostStores } from '../src/storage/types.js'

export interface SuiteContext {
  home: string
  env: NodeJS.ProcessEnv
  open(): Promise<HostStores>
}

export function token(overrides: Record<string, unknown> = {}): OAuthToken {
  return { access_token: 'at-1', refresh_token: 'rt-1', expiry: 2_000_000_000, token_type: 'Bearer', ...overrides }
}

/** Env for a fresh store; extra sets the backend (CREDPROXY_KEYRING, CREDPROXY_KEYRING_SERVICE). */
export function storageSuite(backend: BackendName, extraEnv: () => NodeJS.ProcessEnv): void {
  describe(`host storage behaviour (${backend} backend)`, () => {
    let ctx: SuiteContext
    let stores: HostStores

    beforeEach(async () => {
      const home = await mkdtemp(join(tmpdir(), 'credproxy-suite-'))
      const env = { CREDPROXY_HOME: home, ...extraEnv() }
      ctx = { home, env, open: () => openHostStores({ env, log: () => {} }) }
      stores = await ctx.open()
    })
    afterEach(async () => {
      await rm(ctx.home, { recursive: true, force: true })
    })

    test(`uses the ${backend} backend`, () => {
      expect(stores.backend).toBe(backend)
    })

    test('a saved token comes back with provider extras, from a fresh process-level open too', async () => {
      const saved = token({ id_token: 'idt', account: { email: 'a@example.com' } })
      await stores.tokens.saveToken('anthropic', saved)
      expect(await stores.tokens.getToken('anthropic')).toEqual(saved)
      expect(await stores.tokens.getToken('anthropic', 'default')).toEqual(saved)
      expect(await (await ctx.open()).tokens.getToken('anthropic')).toEqual(saved)
    })

    test('a missing token is null, and buckets are kept apart', async () => {
      expect(await stores.tokens.getToken('anthropic')).toBeNull()
      await stores.tokens.saveToken('anthropic', token({ access_token: 'work' }), 'work')
      await stores.tokens.saveToken('anthropic', token({ access_token: 'home' }), 'home@me')
      expect(await stores.tokens.getToken('anthropic')).toBeNull()
      expect((await stores.tokens.getToken('anthropic', 'work'))?.access_token).toBe('work')
      expect((await stores.tokens.getToken('anthropic', 'home@me'))?.access_token).toBe('home')
    })

    test('lists providers and buckets sorted, and forgets removed ones', async () => {
      await stores.tokens.saveToken('zeta', token())
      await stores.tokens.saveToken('alpha', token(), 'b2')
      await stores.tokens.saveToken('alpha', token(), 'b1')
      expect(await stores.tokens.listProviders()).toEqual(['alpha', 'zeta'])
      expect(await stores.tokens.listBuckets('alpha')).toEqual(['b1', 'b2'])
      await stores.tokens.removeToken('alpha', 'b1')
      await stores.tokens.removeToken('zeta')
      expect(await stores.tokens.listProviders()).toEqual(['alpha'])
      expect(await stores.tokens.listBuckets('alpha')).toEqual(['b2'])
      expect(await stores.tokens.getToken('alpha', 'b1')).toBeNull()
    })

    test('rejects a malformed token naming the field, and stores nothing', async () => {
      const bad = { access_token: 'x', token_type: 'Bearer', expiry: 'soon' } as unknown as OAuthToken
      await expect(stores.tokens.saveToken('p', bad)).rejects.toThrow(/expiry/)
      expect(await stores.tokens.listProviders()).toEqual([])
    })

    test('rejects names outside the allowed alphabets, including path tricks', async () => {
      for (const name of ['../evil', 'a/b', '', 'x'.repeat(65), 'sp ace']) {
        await expect(stores.tokens.saveToken(name, token())).rejects.toBeInstanceOf(ProxyError)
        await expect(stores.keys.saveKey(name, 'v')).rejects.toBeInstanceOf(ProxyError)
      }
      await expect(stores.tokens.saveToken('p', token(), 'a:b')).rejects.toThrow(/bucket/)
      expect(await stores.keys.listKeys()).toEqual([])
    })

    test('updateToken is a read-modify-write, and null removes', async () => {
      await stores.tokens.saveToken('p', token({ count: 1 }))
      const written = await stores.tokens.updateToken('p', 'default', (current) => ({
        ...token(),
        count: (current?.['count'] as number) + 1,
      }))
      expect(written?.['count']).toBe(2)
      expect((await stores.tokens.getToken('p'))?.['count']).toBe(2)
      expect(await stores.tokens.updateToken('p', 'default', () => null)).toBeNull()
      expect(await stores.tokens.getToken('p')).toBeNull()
      expect(await stores.tokens.listProviders()).toEqual([])
    })

    test('bucket stats count uses per bucket with a share of the provider total', async () => {
      await stores.tokens.saveToken('p', token(), 'a')
      await stores.tokens.saveToken('p', token(), 'b')
      const before = Date.now()
      for (let i = 0; i < 3; i++) await stores.tokens.recordUsage('p', 'a')
      await stores.tokens.recordUsage('p', 'b')
      const a = await stores.tokens.getBucketStats('p', 'a')
      expect(a).toMatchObject({ bucket: 'a', requestCount: 3, percentage: 75 })
      expect(a?.lastUsed).toBeGreaterThanOrEqual(before)
      expect(await stores.tokens.getBucketStats('p', 'b')).toMatchObject({ requestCount: 1, percentage: 25 })
      expect(await stores.tokens.getBucketStats('p', 'missing')).toBeNull()
    })

    test('API keys: trimmed, listed sorted, has/delete report presence', async () => {
      await stores.keys.saveKey('OPENAI_API_KEY', '  sk-test-123\n')
      await stores.keys.saveKey('A.key-1', 'v')
      expect(await stores.keys.getKey('OPENAI_API_KEY')).toBe('sk-test-123')
      expect(await stores.keys.listKeys()).toEqual(['A.key-1', 'OPENAI_API_KEY'])
      expect(await stores.keys.hasKey('OPENAI_API_KEY')).toBe(true)
      expect(await stores.keys.deleteKey('OPENAI_API_KEY')).toBe(true)
      expect(await stores.keys.deleteKey('OPENAI_API_KEY')).toBe(false)
      expect(await stores.keys.hasKey('OPENAI_API_KEY')).toBe(false)
      expect(await stores.keys.getKey('OPENAI_API_KEY')).toBeNull()
    })

    test('an empty API key value is refused and the old value kept', async () => {
      await stores.keys.saveKey('K', 'old')
      await expect(stores.keys.saveKey('K', ' \n\t')).rejects.toThrow(/empty/)
      expect(await stores.keys.getKey('K')).toBe('old')
    })

    test('tokens and API keys do not see each other', async () => {
      await stores.keys.saveKey('anthropic', 'k')
      expect(await stores.tokens.listProviders()).toEqual([])
      await stores.tokens.saveToken('anthropic', token())
      expect(await stores.keys.listKeys()).toEqual(['anthropic'])
    })

    test('refresh and auth locks exclude a second opener until released', async () => {
      const other = await ctx.open()
      expect(await stores.tokens.acquireRefreshLock('p', { bucket: 'b' })).toBe(true)
      expect(await other.tokens.acquireRefreshLock('p', { bucket: 'b', waitMs: 50 })).toBe(false)
      // Other buckets and the auth lock are independent.
      expect(await other.tokens.acquireRefreshLock('p', { waitMs: 50 })).toBe(true)
      await expect(withRefreshLock(other.tokens, 'p', 'b', () => Promise.resolve(1), { waitMs: 50 })).rejects.toBeInstanceOf(
        LockTimeoutError,
      )
      await stores.tokens.releaseRefreshLock('p', 'b')
      expect(await withRefreshLock(other.tokens, 'p', 'b', () => Promise.resolve('ran'), { waitMs: 1_000 })).toBe('ran')
      expect(await stores.tokens.acquireAuthLock('p')).toBe(true)
      expect(await other.tokens.acquireAuthLock('p', { waitMs: 50 })).toBe(false)
      await stores.tokens.releaseAuthLock('p')
      expect(await other.tokens.acquireAuthLock('p', { waitMs: 1_000 })).toBe(true)
      await other.tokens.releaseAuthLock('p')
      await other.tokens.releaseRefreshLock('p')
    })

    test('concurrent updates in one process all apply', async () => {
      await Promise.all(
        Array.from({ length: 20 }, () =>
          stores.tokens.updateToken('p', 'default', (current) => ({
            ...token(),
            count: ((current?.['count'] as number | undefined) ?? 0) + 1,
          })),
        ),
      )
      expect((await stores.tokens.getToken('p'))?.['count']).toBe(20)
    })
  })
}
