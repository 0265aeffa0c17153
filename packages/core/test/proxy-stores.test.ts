// ProxyTokenStore and ProxyProviderKeyStorage over a real Unix socket against the
// hand-written test peer (helpers/test-peer.ts); the real server is tested in @credproxy/cli.
import { afterEach, describe, expect, test } from 'vitest'
import { ProxyError, ProxyProviderKeyStorage, ProxySocketClient, ProxyTokenStore } from '../src/index.js'
import { TestPeer, TOKEN, type Frame, type PeerConnection } from './helpers/test-peer.js'

const SECRET = Buffer.alloc(32, 9)
const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

/** A tiny in-memory broker: enough host behaviour to check what the stores send and map. */
function fakeHost(request: Frame, c: PeerConnection): void {
  const p = (request['payload'] ?? {}) as Record<string, unknown>
  switch (request['op']) {
    case 'get_token':
    case 'refresh_token':
      return p['provider'] === 'anthropic' ? c.reply(request, { ...TOKEN, bucket_hint: p['bucket'] ?? 'default' }) : c.fail(request, 'NOT_FOUND')
    case 'save_token':
      return c.reply(request, {})
    case 'remove_token':
      return p['provider'] === 'anthropic' ? c.reply(request, {}) : c.fail(request, 'NOT_FOUND')
    case 'list_providers':
      return c.reply(request, { providers: ['anthropic'] })
    case 'list_buckets':
      return c.reply(request, { buckets: ['default', 'work'] })
    case 'get_bucket_stats':
      return p['bucket'] === 'work' ? c.reply(request, { bucket: 'work', requestCount: 3, percentage: 75, lastUsed: 1700000000000 }) : c.fail(request, 'NOT_FOUND')
    case 'get_api_key':
      if (p['name'] === 'SECRET_KEY') return c.fail(request, 'NOT_GRANTED', 'grant it with credproxy grant --key SECRET_KEY')
      return p['name'] === 'OPENAI_API_KEY' ? c.reply(request, { key: 'sk-test' }) : c.fail(request, 'NOT_FOUND')
    case 'list_api_keys':
      return c.reply(request, { keys: ['OPENAI_API_KEY'] })
    case 'has_api_key':
      return c.reply(request, { exists: p['name'] === 'OPENAI_API_KEY' })
    default:
      return c.fail(request, 'INVALID_REQUEST')
  }
}

async function setup(): Promise<{ peer: TestPeer; tokens: ProxyTokenStore; keys: ProxyProviderKeyStorage }> {
  const peer = await TestPeer.start({ secret: SECRET, onRequest: fakeHost })
  const client = new ProxySocketClient({ socketPath: peer.socketPath, secret: SECRET })
  cleanups.push(() => peer.close(), () => client.close())
  return { peer, tokens: new ProxyTokenStore(client), keys: new ProxyProviderKeyStorage(client) }
}

describe('ProxyTokenStore', () => {
  test('getToken: the token, or null for NOT_FOUND', async () => {
    const { tokens, peer } = await setup()
    expect(await tokens.getToken('anthropic', 'work')).toEqual({ ...TOKEN, bucket_hint: 'work' })
    expect(await tokens.getToken('nobody')).toBeNull()
    expect(peer.requests.map((r) => r['payload'])).toEqual([{ provider: 'anthropic', bucket: 'work' }, { provider: 'nobody' }])
  })

  test('other codes throw ProxyError with the server message', async () => {
    const { keys } = await setup()
    const error = await keys.getKey('SECRET_KEY').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ProxyError)
    expect((error as ProxyError).code).toBe('NOT_GRANTED')
    expect((error as ProxyError).message).toContain('credproxy grant --key SECRET_KEY')
  })

  test('saveToken never sends a refresh token or other host-only fields', async () => {
    const { tokens, peer } = await setup()
    await tokens.saveToken('anthropic', { ...TOKEN, refresh_token: 'rt-secret', device_code: 'dc', id_token: 'kept' }, 'work')
    expect(peer.requests[0]?.['payload']).toEqual({ provider: 'anthropic', bucket: 'work', token: { ...TOKEN, id_token: 'kept' } })
    const bytes = Buffer.concat(peer.connections.flatMap((c) => c.bytes)).toString('latin1')
    expect(bytes).not.toContain('rt-secret')
  })

  test('removeToken of something missing is not an error', async () => {
    const { tokens } = await setup()
    await expect(tokens.removeToken('anthropic')).resolves.toBeUndefined()
    await expect(tokens.removeToken('nobody')).resolves.toBeUndefined()
  })

  test('lists, stats and refresh', async () => {
    const { tokens, peer } = await setup()
    expect(await tokens.listProviders()).toEqual(['anthropic'])
    expect(await tokens.listBuckets('anthropic')).toEqual(['default', 'work'])
    expect(await tokens.getBucketStats('anthropic', 'work')).toEqual({ bucket: 'work', requestCount: 3, percentage: 75, lastUsed: 1700000000000 })
    expect(await tokens.getBucketStats('anthropic')).toBeNull()
    expect(await tokens.refreshToken('anthropic')).toMatchObject({ access_token: 'at-1' })
    expect(peer.requests.at(-1)).toMatchObject({ op: 'refresh_token', payload: { provider: 'anthropic' } })
  })

  test('locks are host-side: no-ops that succeed without a round trip', async () => {
    const { tokens, peer } = await setup()
    expect(await tokens.acquireRefreshLock('anthropic', { waitMs: 1 })).toBe(true)
    await tokens.releaseRefreshLock('anthropic')
    expect(await tokens.acquireAuthLock('anthropic')).toBe(true)
    await tokens.releaseAuthLock('anthropic')
    expect(peer.connections).toHaveLength(0)
  })
})

describe('ProxyProviderKeyStorage', () => {
  test('reads keys, lists granted names, answers has', async () => {
    const { keys } = await setup()
    expect(await keys.getKey('OPENAI_API_KEY')).toBe('sk-test')
    expect(await keys.getKey('MISSING')).toBeNull()
    expect(await keys.listKeys()).toEqual(['OPENAI_API_KEY'])
    expect(await keys.hasKey('OPENAI_API_KEY')).toBe(true)
    expect(await keys.hasKey('MISSING')).toBe(false)
  })

  test('saveKey and deleteKey are FORBIDDEN and point at the host command', async () => {
    const { keys, peer } = await setup()
    const save = (await keys.saveKey('OPENAI_API_KEY', 'sk-new').catch((e: unknown) => e)) as ProxyError
    expect(save.code).toBe('FORBIDDEN')
    expect(save.message).toContain('credproxy key set OPENAI_API_KEY')
    expect(save.message).toContain('outside the sandbox')
    expect(save.message).not.toContain('sk-new')
    const del = (await keys.deleteKey('OPENAI_API_KEY').catch((e: unknown) => e)) as ProxyError
    expect(del.code).toBe('FORBIDDEN')
    expect(peer.connections).toHaveLength(0)
  })
})
