// The handshake matrix over a real Unix socket, in raw frames: v3 mutual proof,
// legacy v1/v2 bearer tokens, version negotiation, refusals, deadlines.
import { computeClientProof, encodeFrame, generateNonce } from '@credproxy/core'
import { afterEach, describe, expect, test, vi } from 'vitest'
import { LEGACY_REFUSED_MESSAGE } from '../src/broker/broker-connection.js'
import { CredentialProxyServer } from '../src/broker/credential-proxy-server.js'
import { startServer, TOKEN, type ServerFixture } from './helpers/server-fixture.js'
import { memoryStores, type MemoryKeyStorage, type MemoryTokenStore } from './helpers/server-memory-stores.js'
import { RawClient } from './helpers/server-raw-client.js'

type Stores = { tokens: MemoryTokenStore; keys: MemoryKeyStorage; backend: 'file' }
let fx: ServerFixture<Stores> | undefined
afterEach(async () => {
  await fx?.cleanup()
  fx = undefined
})

const LEGACY = 'a'.repeat(64)

async function legacyServer(): Promise<ServerFixture<Stores>> {
  fx = await startServer<Stores>({ allowLegacyClients: true, legacyToken: LEGACY })
  await fx.stores.tokens.saveToken('anthropic', TOKEN)
  return fx
}

/** After every hostile case, a fresh client must still be served. */
async function expectStillServing(f: ServerFixture<Stores>): Promise<void> {
  const c = await f.client()
  const answer = await c.request('list_providers')
  expect(answer['ok']).toBe(true)
  c.close()
}

describe('v3 handshake', () => {
  test('proves the secret both ways and answers the session id', async () => {
    fx = await startServer<Stores>()
    const c = await RawClient.connect(fx.socketPath)
    const finish = await c.handshakeV3(fx.secret)
    expect(finish).toEqual({ v: 3, op: 'handshake_finish', ok: true, data: { session: fx.server.sessionId } })
    expect(c.receivedText()).not.toContain(fx.secret.toString('hex'))
    expect(fx.audit.some((e) => e.event === 'handshake_ok' && e.protocolVersion === 3)).toBe(true)
    c.close()
  })

  test('a wrong client proof is refused with UNAUTHORIZED, the socket closed, and audited', async () => {
    fx = await startServer<Stores>()
    const c = await RawClient.connect(fx.socketPath)
    // A client holding another secret already rejects the server's proof...
    await expect(c.handshakeV3(Buffer.alloc(32, 7))).rejects.toThrow('server proof does not match')
    c.close()
    // ...and a client that goes on with a wrong proof is refused.
    const d = await RawClient.connect(fx.socketPath)
    d.send({ v: 3, op: 'handshake', payload: { minVersion: 3, maxVersion: 3, clientNonce: generateNonce() } })
    await d.next()
    d.send({ v: 3, op: 'handshake_finish', payload: { clientProof: 'f'.repeat(64) } })
    const answer = await d.next()
    expect(answer).toMatchObject({ op: 'handshake_finish', ok: false, code: 'UNAUTHORIZED' })
    await d.waitClosed()
    expect(fx.audit.some((e) => e.event === 'handshake_failed' && e.reason === 'bad-proof')).toBe(true)
    await expectStillServing(fx)
  })

  test('a proof replayed from an earlier connection is refused', async () => {
    fx = await startServer<Stores>()
    const clientNonce = generateNonce()
    const first = await RawClient.connect(fx.socketPath)
    first.send({ v: 3, op: 'handshake', payload: { minVersion: 3, maxVersion: 3, clientNonce } })
    const hello = (await first.next())['data'] as { serverNonce: string }
    const proof = computeClientProof(fx.secret, hello.serverNonce, clientNonce)
    first.send({ v: 3, op: 'handshake_finish', payload: { clientProof: proof } })
    expect((await first.next())['ok']).toBe(true)
    first.close()
    // An eavesdropper replays the same nonce and proof: the server's fresh nonce makes it useless.
    const replay = await RawClient.connect(fx.socketPath)
    replay.send({ v: 3, op: 'handshake', payload: { minVersion: 3, maxVersion: 3, clientNonce } })
    await replay.next()
    replay.send({ v: 3, op: 'handshake_finish', payload: { clientProof: proof } })
    expect(await replay.next()).toMatchObject({ ok: false, code: 'UNAUTHORIZED' })
    await replay.waitClosed()
    await expectStillServing(fx)
  })

  test('a v3 range without a clientNonce is INVALID_REQUEST', async () => {
    fx = await startServer<Stores>()
    const c = await RawClient.connect(fx.socketPath)
    c.send({ v: 3, op: 'handshake', payload: { minVersion: 3, maxVersion: 3 } })
    expect(await c.next()).toMatchObject({ ok: false, code: 'INVALID_REQUEST' })
    await c.waitClosed()
  })
})

describe('legacy v1/v2 handshake', () => {
  test('v2 with the right token negotiates 2 and is served', async () => {
    const f = await legacyServer()
    const c = await RawClient.connect(f.socketPath)
    expect(await c.handshakeLegacy(LEGACY, 2)).toEqual({ v: 2, op: 'handshake', ok: true, data: { version: 2 } })
    const answer = await c.request('get_token', { provider: 'anthropic' }, 2)
    expect(answer).toMatchObject({ ok: true, data: { access_token: 'at-visible-1' } })
    expect(Object.keys(answer).sort()).toEqual(['data', 'id', 'ok'])
    c.close()
  })

  test('a v1 client (llxprt-code inner client shape) negotiates 1', async () => {
    const f = await legacyServer()
    const c = await RawClient.connect(f.socketPath)
    c.send({ v: 1, op: 'handshake', payload: { minVersion: 1, maxVersion: 1, capabilityToken: LEGACY } })
    expect(await c.next()).toEqual({ v: 1, op: 'handshake', ok: true, data: { version: 1 } })
    c.send({ v: 1, id: '6d1f0a52-58b6-4b4e-9a57-7f3a3c1b2d10', op: 'get_token', payload: { provider: 'anthropic' } })
    expect(await c.answerTo('6d1f0a52-58b6-4b4e-9a57-7f3a3c1b2d10')).toMatchObject({ ok: true })
    // Ops newer than v1 are refused as such.
    expect(await c.request('cancel', { targetId: 'x' }, 1)).toMatchObject({ ok: false, code: 'INVALID_REQUEST' })
    expect(await c.request('session_info', {}, 1)).toMatchObject({ ok: false, code: 'INVALID_REQUEST' })
    c.close()
  })

  test.each([
    ['a wrong token', 'b'.repeat(64), 'bad-token'],
    ['no token', undefined, 'missing-token'],
  ])('%s is UNAUTHORIZED and closed', async (_name, token, reason) => {
    const f = await legacyServer()
    const c = await RawClient.connect(f.socketPath)
    expect(await c.handshakeLegacy(token, 2)).toMatchObject({ op: 'handshake', ok: false, code: 'UNAUTHORIZED' })
    await c.waitClosed()
    expect(f.audit.some((e) => e.event === 'handshake_failed' && e.reason === reason)).toBe(true)
    expect(JSON.stringify(f.audit)).not.toContain('b'.repeat(64))
    await expectStillServing(f)
  })

  test('legacy clients are refused when the session does not allow them, with a message for the operator', async () => {
    fx = await startServer<Stores>()
    const c = await RawClient.connect(fx.socketPath)
    const answer = await c.handshakeLegacy(fx.secret.toString('hex'), 2)
    expect(answer).toMatchObject({ ok: false, code: 'UNAUTHORIZED', error: LEGACY_REFUSED_MESSAGE })
    expect(LEGACY_REFUSED_MESSAGE).toContain('legacy clients allowed')
    await c.waitClosed()
    await expectStillServing(fx)
  })

  test('legacy mode without a token needs a peer check: the session secret is never a bearer token', () => {
    expect(() => new CredentialProxyServer({ stores: memoryStores(), allowLegacyClients: true })).toThrow(/peer check/)
  })

  test("without a token, llxprt-code's tokenless v1 handshake is admitted by the peer check alone", async () => {
    const admitted: string[] = []
    fx = await startServer<Stores>({
      allowLegacyClients: true,
      peerCheck: () => {
        admitted.push('checked')
        return { ok: true, peer: null }
      },
    })
    await fx.stores.tokens.saveToken('anthropic', TOKEN)
    const c = await RawClient.connect(fx.socketPath)
    // The exact frame llxprt-code's inner client sends: v1, no capabilityToken.
    c.send({ v: 1, op: 'handshake', payload: { minVersion: 1, maxVersion: 1 } })
    expect(await c.next()).toMatchObject({ op: 'handshake', ok: true, data: { version: 1 } })
    c.send({ v: 1, id: 'r1', op: 'get_token', payload: { provider: 'anthropic' } })
    const answer = await c.next()
    expect(answer).toMatchObject({ id: 'r1', ok: true, data: { access_token: TOKEN.access_token } })
    expect(JSON.stringify(answer)).not.toContain('refresh_token')
    expect(admitted).toEqual(['checked'])
    c.close()
  })

  test('a peer the check refuses never reaches the tokenless legacy handshake', async () => {
    fx = await startServer<Stores>({ allowLegacyClients: true, peerCheck: () => ({ ok: false, peer: null, reason: 'outside-sandbox' }) })
    const c = await RawClient.connect(fx.socketPath)
    c.send({ v: 1, op: 'handshake', payload: { minVersion: 1, maxVersion: 1 } })
    expect(await c.next()).toMatchObject({ ok: false, code: 'FORBIDDEN' })
    await c.waitClosed()
  })
})

describe('negotiation and deadlines', () => {
  test('an unsupported range is UNKNOWN_VERSION, checked before the token', async () => {
    const f = await legacyServer()
    const c = await RawClient.connect(f.socketPath)
    c.send({ v: 4, op: 'handshake', payload: { minVersion: 4, maxVersion: 5, capabilityToken: 'wrong' } })
    expect(await c.next()).toMatchObject({ op: 'handshake', ok: false, code: 'UNKNOWN_VERSION' })
    await c.waitClosed()
    await expectStillServing(f)
  })

  test('a first frame that is not a handshake is INVALID_REQUEST and closed', async () => {
    fx = await startServer<Stores>()
    const c = await RawClient.connect(fx.socketPath)
    c.send({ v: 3, id: '1', op: 'get_token', payload: { provider: 'anthropic' } })
    expect(await c.next()).toMatchObject({ ok: false, code: 'INVALID_REQUEST' })
    await c.waitClosed()
    expect(c.frames).toHaveLength(1)
  })

  test('a client that sends nothing is disconnected past the handshake deadline', async () => {
    fx = await startServer<Stores>({ limits: { handshakeTimeoutMs: 100 } })
    const c = await RawClient.connect(fx.socketPath)
    await c.waitClosed()
    expect(c.frames).toEqual([])
    expect(fx.audit.some((e) => e.reason === 'handshake-timeout')).toBe(true)
    await expectStillServing(fx)
  })

  test('a v3 client that never finishes is disconnected at the same deadline', async () => {
    fx = await startServer<Stores>({ limits: { handshakeTimeoutMs: 100 } })
    const c = await RawClient.connect(fx.socketPath)
    c.send({ v: 3, op: 'handshake', payload: { minVersion: 3, maxVersion: 3, clientNonce: generateNonce() } })
    await c.waitClosed()
    expect(c.frames).toHaveLength(1)
  })

  test('after a failed handshake, later frames are ignored and the socket is destroyed within the close limit', async () => {
    fx = await startServer<Stores>({ limits: { failedHandshakeCloseMs: 100 } })
    // Half-open on our side: only the server's destroy timer can close its end.
    const c = await RawClient.connect(fx.socketPath, { allowHalfOpen: true })
    c.sendRaw(
      Buffer.concat([
        encodeFrame({ v: 2, op: 'handshake', payload: { minVersion: 1, maxVersion: 2, capabilityToken: 'x' } }),
        encodeFrame({ v: 2, id: 'after', op: 'list_providers', payload: {} }),
      ]),
    )
    await c.until(() => c.frames.length > 0)
    await vi.waitFor(() => expect(fx?.server.peers()).toHaveLength(0), { timeout: 5_000, interval: 20 })
    expect(c.frames).toHaveLength(1)
    expect(c.frames[0]).toMatchObject({ code: 'UNAUTHORIZED' })
    c.close()
  })
})

describe('v1 frame limits', () => {
  test('an answer over 64 KiB becomes RESPONSE_TOO_LARGE for v1, and is sent whole to v2', async () => {
    const f = await legacyServer()
    await f.stores.tokens.saveToken('big', { ...TOKEN, padding: 'x'.repeat(70_000) })
    const v1 = await RawClient.connect(f.socketPath)
    await v1.handshakeLegacy(LEGACY, 1)
    expect(await v1.request('get_token', { provider: 'big' }, 1)).toMatchObject({ ok: false, code: 'RESPONSE_TOO_LARGE' })
    // The connection stays usable.
    expect(await v1.request('get_token', { provider: 'anthropic' }, 1)).toMatchObject({ ok: true })
    const v2 = await RawClient.connect(f.socketPath)
    await v2.handshakeLegacy(LEGACY, 2)
    const whole = await v2.request('get_token', { provider: 'big' }, 2)
    expect((whole['data'] as { padding: string }).padding).toHaveLength(70_000)
    v1.close()
    v2.close()
  })

  test('a v1 client declaring a frame over 64 KiB is closed at the header', async () => {
    const f = await legacyServer()
    const c = await RawClient.connect(f.socketPath)
    await c.handshakeLegacy(LEGACY, 1)
    const header = Buffer.alloc(4)
    header.writeUInt32BE(65_537)
    c.sendRaw(header)
    await c.waitClosed()
    expect(c.frames).toHaveLength(1)
    await expectStillServing(f)
  })
})
