// Must show: a listener without the secret learns nothing usable; a wrong proof, a
// replayed proof and a missing secret are refused, and each refusal is in the audit file.
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  computeClientProof,
  computeServerProof,
  encodeFrame,
  FrameDecoder,
  generateNonce,
  generateSessionSecret,
  ProxyError,
  ProxySocketClient,
} from '@credproxy/core'
import { afterEach, describe, expect, test } from 'vitest'
import { startSecureSession, type SecureSession } from './helpers/security-helpers.js'
import { RawClient } from './helpers/server-raw-client.js'

let session: SecureSession | undefined
let fake: { server: Server; dir: string } | undefined

afterEach(async () => {
  await session?.cleanup()
  session = undefined
  if (fake) {
    await new Promise<void>((resolve) => fake?.server.close(() => resolve()))
    await rm(fake.dir, { recursive: true, force: true })
    fake = undefined
  }
})

const READ = { providers: [{ provider: 'anthropic' }], keys: [], capabilities: ['read' as const] }

/**
 * A listener that does not hold the secret: it answers the hello with `answer(hello)`
 * and records every frame the client sends it.
 */
async function fakeListener(answer: (hello: Record<string, unknown>) => Record<string, unknown>) {
  const dir = await mkdtemp(join(tmpdir(), 'cp-fake-'))
  const socketPath = join(dir, 'broker.sock')
  const received: Record<string, unknown>[] = []
  const bytes: Buffer[] = []
  const server = createServer((socket) => {
    const decoder = new FrameDecoder()
    socket.on('error', () => undefined)
    socket.on('data', (chunk: Buffer) => {
      bytes.push(chunk)
      for (const frame of decoder.push(chunk)) {
        received.push(frame)
        if (frame['op'] === 'handshake') socket.write(encodeFrame(answer(frame)))
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(socketPath, resolve))
  fake = { server, dir }
  return { socketPath, received, bytes }
}

describe('a listener that does not know the secret', () => {
  test('gets only a random nonce: the client aborts before sending any proof or request', async () => {
    const secret = generateSessionSecret()
    const listener = await fakeListener((hello) => {
      const clientNonce = (hello['payload'] as { clientNonce: string }).clientNonce
      // Its best guess: a proof under some other secret.
      const serverNonce = generateNonce()
      return { v: 3, op: 'handshake', ok: true, data: { version: 3, serverNonce, serverProof: computeServerProof(generateSessionSecret(), clientNonce, serverNonce) } }
    })
    const client = new ProxySocketClient({ socketPath: listener.socketPath, secret, connectAttempts: 1 })
    const error = await client.request('get_token', { provider: 'anthropic' }).catch((e: unknown) => e)
    client.close()
    expect(error).toBeInstanceOf(ProxyError)
    expect((error as ProxyError).code).toBe('SERVER_UNVERIFIED')
    expect(listener.received.map((frame) => frame['op'])).toEqual(['handshake'])
    expect(Object.keys(listener.received[0]?.['payload'] as object).sort()).toEqual(['clientNonce', 'maxVersion', 'minVersion'])
    expect(Buffer.concat(listener.bytes).toString('latin1')).not.toContain(secret.toString('hex'))
  })

  test('cannot downgrade a client holding the secret to an unauthenticated legacy session', async () => {
    const secret = generateSessionSecret()
    const listener = await fakeListener(() => ({ v: 2, op: 'handshake', ok: true, data: { version: 2 } }))
    const client = new ProxySocketClient({ socketPath: listener.socketPath, secret, connectAttempts: 1 })
    const error = await client.request('get_token', { provider: 'anthropic' }).catch((e: unknown) => e)
    client.close()
    expect(error).toBeInstanceOf(ProxyError)
    expect(listener.received.map((frame) => frame['op'])).toEqual(['handshake'])
  })

  test('what it did receive (the client nonce) does not let it through the real broker', async () => {
    session = await startSecureSession({ grants: READ })
    const secret = session.secret
    const listener = await fakeListener(() => ({ v: 3, op: 'handshake', ok: false, code: 'UNAUTHORIZED', error: 'x' }))
    const victim = new ProxySocketClient({ socketPath: listener.socketPath, secret, connectAttempts: 1 })
    await victim.request('list_providers', {}).catch(() => undefined)
    victim.close()
    const stolenNonce = (listener.received[0]?.['payload'] as { clientNonce: string }).clientNonce
    const attacker = await RawClient.connect(session.socketPath)
    attacker.send({ v: 3, op: 'handshake', payload: { minVersion: 3, maxVersion: 3, clientNonce: stolenNonce } })
    await attacker.next()
    attacker.send({ v: 3, op: 'handshake_finish', payload: { clientProof: stolenNonce } })
    expect(await attacker.next()).toMatchObject({ ok: false, code: 'UNAUTHORIZED' })
    await attacker.waitClosed()
  })
})

describe('the real broker refuses and audits', () => {
  test('a wrong client proof', async () => {
    session = await startSecureSession({ grants: READ })
    const raw = await RawClient.connect(session.socketPath)
    raw.send({ v: 3, op: 'handshake', payload: { minVersion: 3, maxVersion: 3, clientNonce: generateNonce() } })
    const hello = await raw.next()
    expect(hello).toMatchObject({ ok: true, data: { version: 3 } })
    raw.send({ v: 3, op: 'handshake_finish', payload: { clientProof: computeClientProof(generateSessionSecret(), 'a'.repeat(64), 'b'.repeat(64)) } })
    expect(await raw.next()).toMatchObject({ op: 'handshake_finish', ok: false, code: 'UNAUTHORIZED' })
    await raw.waitClosed()
    expect(await session.auditLines()).toContainEqual(
      expect.objectContaining({ event: 'handshake_failed', outcome: 'UNAUTHORIZED', reason: 'bad-proof', session: session.sessionId }),
    )
  })

  test('a client proof replayed from an earlier, successful connection', async () => {
    session = await startSecureSession({ grants: READ })
    const clientNonce = generateNonce()
    const first = await RawClient.connect(session.socketPath)
    first.send({ v: 3, op: 'handshake', payload: { minVersion: 3, maxVersion: 3, clientNonce } })
    const serverNonce = ((await first.next())['data'] as { serverNonce: string }).serverNonce
    const proof = computeClientProof(session.secret, serverNonce, clientNonce)
    first.send({ v: 3, op: 'handshake_finish', payload: { clientProof: proof } })
    expect(await first.next()).toMatchObject({ ok: true, data: { session: session.sessionId } })
    first.close()

    const replay = await RawClient.connect(session.socketPath)
    replay.send({ v: 3, op: 'handshake', payload: { minVersion: 3, maxVersion: 3, clientNonce } })
    const again = (await replay.next())['data'] as { serverNonce: string }
    expect(again.serverNonce).not.toBe(serverNonce)
    replay.send({ v: 3, op: 'handshake_finish', payload: { clientProof: proof } })
    expect(await replay.next()).toMatchObject({ ok: false, code: 'UNAUTHORIZED' })
    await replay.waitClosed()
    const lines = await session.auditLines()
    expect(lines.filter((line) => line.event === 'handshake_ok')).toHaveLength(1)
    expect(lines).toContainEqual(expect.objectContaining({ event: 'handshake_failed', reason: 'bad-proof' }))
  })

  test('a client without the secret (legacy handshake with no token, or none at all)', async () => {
    session = await startSecureSession({ grants: READ })
    const legacy = await RawClient.connect(session.socketPath)
    expect(await legacy.handshakeLegacy(undefined)).toMatchObject({ op: 'handshake', ok: false, code: 'UNAUTHORIZED' })
    await legacy.waitClosed()

    const skipper = await RawClient.connect(session.socketPath)
    skipper.send({ v: 3, id: '1', op: 'get_token', payload: { provider: 'anthropic' } })
    expect(await skipper.next()).toMatchObject({ ok: false, code: 'INVALID_REQUEST' })
    await skipper.waitClosed()

    const lines = await session.auditLines()
    expect(lines).toContainEqual(expect.objectContaining({ event: 'handshake_failed', outcome: 'UNAUTHORIZED' }))
    expect(lines).toContainEqual(expect.objectContaining({ event: 'handshake_failed', reason: 'not-a-handshake' }))
    expect(lines.some((line) => line.event === 'request')).toBe(false)
  })

  test('a legitimate client is served after all of that', async () => {
    session = await startSecureSession({ grants: READ })
    await session.stores.tokens.saveToken('anthropic', { access_token: 'at-1', expiry: 4_000_000_000, token_type: 'Bearer' })
    const client = session.client()
    expect(await client.request('get_token', { provider: 'anthropic' })).toMatchObject({ access_token: 'at-1' })
    expect(await session.auditLines()).toContainEqual(
      expect.objectContaining({ event: 'request', op: 'get_token', provider: 'anthropic', outcome: 'ok', protocolVersion: 3 }),
    )
  })
})
