// The host-aware factories open host storage lazily, once; a failed opening must not
// be cached, or one bad start (wrong setting, unwritable home) breaks the store for good.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { createProviderKeyStorage, createTokenStore } from '../src/factories.js'

let home: string

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'cp-factories-'))
})
afterAll(async () => {
  await rm(home, { recursive: true, force: true })
})

describe('host factories', () => {
  test('a failed opening is retried by the next call on the same store', async () => {
    // The factory keeps this env object: fixing the setting in it is what the retry sees.
    const env: NodeJS.ProcessEnv = { CREDPROXY_HOME: join(home, 'tokens'), CREDPROXY_KEYRING: 'bogus' }
    const tokens = createTokenStore({ env, log: () => undefined })
    await expect(tokens.listProviders()).rejects.toThrow(/CREDPROXY_KEYRING/)
    env['CREDPROXY_KEYRING'] = 'off'
    await tokens.saveToken('github', { access_token: 'at-1', expiry: Math.floor(Date.now() / 1000) + 3600, token_type: 'Bearer' })
    expect(await tokens.listProviders()).toEqual(['github'])
    expect((await tokens.getToken('github'))?.access_token).toBe('at-1')
  })

  test('the same for the key storage', async () => {
    const env: NodeJS.ProcessEnv = { CREDPROXY_HOME: join(home, 'keys'), CREDPROXY_KEYRING: 'bogus' }
    const keys = createProviderKeyStorage({ env, log: () => undefined })
    await expect(keys.listKeys()).rejects.toThrow(/CREDPROXY_KEYRING/)
    env['CREDPROXY_KEYRING'] = 'off'
    await keys.saveKey('K', 'factory-key-value')
    expect(await keys.getKey('K')).toBe('factory-key-value')
  })
})
