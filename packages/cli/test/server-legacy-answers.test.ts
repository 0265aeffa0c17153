// llxprt-code's v1/v2 clients against a session that did not grant a name: they get
// the answers llxprt-code's own server gives (NOT_FOUND, {exists:false}), which their
// wrappers turn into null/false; a v3 client still gets NOT_GRANTED. Also: a token
// whose scope is null (their schema allows it) is accepted, and a refused peer's
// handshake answer carries v.
import { afterEach, describe, expect, test } from 'vitest'
import { startServer, TOKEN, type ServerFixture } from './helpers/server-fixture.js'
import { memoryStores } from './helpers/server-memory-stores.js'
import { RawClient } from './helpers/server-raw-client.js'

type Stores = ReturnType<typeof memoryStores>
let fx: ServerFixture<Stores> | undefined
afterEach(async () => {
  await fx?.cleanup()
  fx = undefined
})

const GRANTS = { providers: [{ provider: 'granted' }], keys: ['GRANTED_KEY'], capabilities: ['read', 'login', 'save'] as Array<'read' | 'login' | 'save'> }

async function legacyServer(): Promise<ServerFixture<Stores>> {
  const server = await startServer<Stores>({ allowLegacyClients: true, peerCheck: () => ({ ok: true, peer: null }), grants: GRANTS })
  await server.stores.tokens.saveToken('other', TOKEN)
  await server.stores.keys.saveKey('OTHER_KEY', 'other-key-value')
  return server
}

describe('refused names for v1/v2 clients', () => {
  test.each([1, 2])('v%i: get_token and get_api_key answer NOT_FOUND, has_api_key answers {exists:false}; nothing leaks; audit says NOT_GRANTED', async (v) => {
    fx = await legacyServer()
    const c = await RawClient.connect(fx.socketPath)
    expect(await c.handshakeLegacy(undefined, v)).toMatchObject({ ok: true, data: { version: v } })
    const token = await c.request('get_token', { provider: 'other' }, v)
    expect(token).toMatchObject({ ok: false, code: 'NOT_FOUND' })
    expect(String(token['error'])).toContain('--grant other')
    expect(await c.request('get_api_key', { name: 'OTHER_KEY' }, v)).toMatchObject({ ok: false, code: 'NOT_FOUND' })
    expect(await c.request('has_api_key', { name: 'OTHER_KEY' }, v)).toMatchObject({ ok: true, data: { exists: false } })
    expect(JSON.stringify([token])).not.toContain(TOKEN.access_token)
    expect(fx.audit.filter((e) => e.event === 'request').map((e) => e.outcome)).toEqual(['NOT_GRANTED', 'NOT_GRANTED', 'NOT_GRANTED'])
    c.close()
  })

  test('v3 keeps NOT_GRANTED', async () => {
    fx = await legacyServer()
    const c = await fx.client()
    expect(await c.request('get_token', { provider: 'other' })).toMatchObject({ ok: false, code: 'NOT_GRANTED' })
    expect(await c.request('get_api_key', { name: 'OTHER_KEY' })).toMatchObject({ ok: false, code: 'NOT_GRANTED' })
    expect(await c.request('has_api_key', { name: 'OTHER_KEY' })).toMatchObject({ ok: false, code: 'NOT_GRANTED' })
  })
})

test('save_token with scope: null (as llxprt-code sends) is stored', async () => {
  fx = await legacyServer()
  const c = await RawClient.connect(fx.socketPath)
  await c.handshakeLegacy(undefined, 2)
  const token = { access_token: 'at-null-scope', expiry: Math.floor(Date.now() / 1000) + 600, token_type: 'Bearer', scope: null }
  expect(await c.request('save_token', { provider: 'granted', token }, 2)).toMatchObject({ ok: true })
  expect(await fx.stores.tokens.getToken('granted')).toMatchObject({ access_token: 'at-null-scope' })
  c.close()
})

test('a refused peer gets a handshake answer with v, like every handshake answer', async () => {
  fx = await startServer<Stores>({ peerCheck: () => ({ ok: false, peer: null, reason: 'outside-sandbox' }) })
  const c = await RawClient.connect(fx.socketPath)
  c.send({ v: 2, op: 'handshake', payload: { minVersion: 1, maxVersion: 2 } })
  expect(await c.next()).toEqual({ v: 1, op: 'handshake', ok: false, code: 'FORBIDDEN', error: expect.any(String) as unknown })
})
