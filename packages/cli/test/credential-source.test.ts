// The stored-only credential source: what the broker (and next the egress proxy)
// gets when no providers.json exists. The refreshing one runs against a real
// authorization server in oauth-refresh.test.ts.
import { describe, expect, test } from 'vitest'
import { StoredCredentialSource } from '../src/credentials/stored-credential-source.js'
import { TOKEN } from './helpers/server-fixture.js'
import { memoryStores } from './helpers/server-memory-stores.js'

const now = (): number => Math.floor(Date.now() / 1000)

describe('StoredCredentialSource', () => {
  test('freshToken is the stored token as is; refreshNow answers a still-valid one', async () => {
    const stores = memoryStores()
    await stores.tokens.saveToken('p', { ...TOKEN, expiry: now() + 600 })
    const source = new StoredCredentialSource(stores)
    expect((await source.freshToken('p', 'default'))?.access_token).toBe(TOKEN.access_token)
    expect((await source.refreshNow('p', 'default')).access_token).toBe(TOKEN.access_token)
    expect(await source.freshToken('p', 'other')).toBeNull()
  })

  test('refreshNow cannot refresh: an expired token is REFRESH_NOT_AVAILABLE, a missing one NOT_FOUND', async () => {
    const stores = memoryStores()
    await stores.tokens.saveToken('p', { ...TOKEN, expiry: now() - 5 })
    const source = new StoredCredentialSource(stores)
    await expect(source.refreshNow('p', 'default')).rejects.toMatchObject({ code: 'REFRESH_NOT_AVAILABLE' })
    await expect(source.refreshNow('p', 'nothing')).rejects.toMatchObject({ code: 'NOT_FOUND' })
  })

  test('the egress door: accessToken without forceRefresh reads, with it refreshes; apiKey reads the key store', async () => {
    const stores = memoryStores()
    await stores.tokens.saveToken('p', { ...TOKEN, expiry: now() - 5 })
    await stores.keys.saveKey('K', 'sk-k')
    const source = new StoredCredentialSource(stores)
    expect((await source.accessToken('p', 'default'))?.access_token).toBe(TOKEN.access_token)
    await expect(source.accessToken('p', 'default', { forceRefresh: true })).rejects.toMatchObject({ code: 'REFRESH_NOT_AVAILABLE' })
    expect(await source.apiKey('K')).toBe('sk-k')
    expect(await source.apiKey('missing')).toBeNull()
  })

  test('saveToken drops host-only fields from the sandbox and keeps the stored refresh token', async () => {
    const stores = memoryStores()
    await stores.tokens.saveToken('p', { ...TOKEN, refresh_token: 'rt-host' })
    const source = new StoredCredentialSource(stores)
    await source.saveToken('p', 'default', { ...TOKEN, access_token: 'at-new', refresh_token: 'rt-from-sandbox' })
    const stored = await stores.tokens.getToken('p', 'default')
    expect(stored).toMatchObject({ access_token: 'at-new', refresh_token: 'rt-host' })
  })
})
