// Socket placement and permissions, stale-socket cleanup, stop() draining and
// cleanup, and the server over the real host file store (CREDPROXY_KEYRING=off).
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { spawnSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, test, vi } from 'vitest'
import { CredentialProxyServer } from '../src/broker/credential-proxy-server.js'
import { openHostStores } from '../src/storage/index.js'
import { resolvePaths } from '../src/paths.js'
import { ALL_GRANTS, startServer, TOKEN } from './helpers/server-fixture.js'
import { memoryStores } from './helpers/server-memory-stores.js'
import { RawClient } from './helpers/server-raw-client.js'

const cleanups: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f()
})

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cpl-'))
  cleanups.push(() => rm(dir, { recursive: true, force: true }))
  return dir
}

const exists = (p: string): Promise<boolean> => stat(p).then(() => true, () => false)

describe('socket placement', () => {
  test('a per-session 0700 directory holds a 0600 broker.sock; stop removes both', async () => {
    const dir = await tempDir()
    const server = new CredentialProxyServer({ stores: memoryStores(), runtimeDir: join(dir, 'run'), sessionId: 'sess-abcdef12' })
    const started = await server.start()
    expect(started.socketPath).toBe(join(dir, 'run', 'sess-abcdef12', 'broker.sock'))
    expect((await stat(join(dir, 'run', 'sess-abcdef12'))).mode & 0o777).toBe(0o700)
    expect((await stat(started.socketPath)).mode & 0o777).toBe(0o600)
    expect(started.secret).toHaveLength(32)
    await server.stop()
    expect(await exists(started.socketPath)).toBe(false)
    expect(await exists(join(dir, 'run', 'sess-abcdef12'))).toBe(false)
    expect(await exists(join(dir, 'run'))).toBe(true)
  })

  test('two servers get two sessions, two directories, two secrets', async () => {
    const dir = await tempDir()
    const a = new CredentialProxyServer({ stores: memoryStores(), runtimeDir: dir })
    const b = new CredentialProxyServer({ stores: memoryStores(), runtimeDir: dir })
    const [sa, sb] = [await a.start(), await b.start()]
    cleanups.push(() => a.stop(), () => b.stop())
    expect(sa.sessionId).not.toBe(sb.sessionId)
    expect(sa.socketPath).not.toBe(sb.socketPath)
    expect(sa.secret.equals(sb.secret)).toBe(false)
  })

  test('an explicit path: a leftover socket nobody listens on is replaced; the new one is 0600', async () => {
    const dir = await tempDir()
    const path = join(dir, 'b.sock')
    // A broker killed with SIGKILL leaves its socket file behind with nobody listening.
    const script = `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`
    spawnSync(process.execPath, ['-e', script])
    expect(await exists(path)).toBe(true)
    const server = new CredentialProxyServer({ stores: memoryStores(), socketPath: path, grants: ALL_GRANTS })
    const started = await server.start()
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    const c = await RawClient.connect(path)
    expect((await c.handshakeV3(started.secret))['ok']).toBe(true)
    c.close()
    await server.stop()
    expect(await exists(path)).toBe(false)
  })

  test('an explicit path with a live listener, or a regular file, is an error naming the path', async () => {
    const dir = await tempDir()
    const live = join(dir, 'live.sock')
    const other = new CredentialProxyServer({ stores: memoryStores(), socketPath: live })
    await other.start()
    cleanups.push(() => other.stop())
    await expect(new CredentialProxyServer({ stores: memoryStores(), socketPath: live }).start()).rejects.toThrow(
      `another broker is already listening on ${live}`,
    )
    const file = join(dir, 'file')
    await writeFile(file, 'keep me')
    await expect(new CredentialProxyServer({ stores: memoryStores(), socketPath: file }).start()).rejects.toThrow(
      `${file} exists and is not a socket`,
    )
    expect(await exists(file)).toBe(true)
  })

  test('a bad session id never becomes a path', () => {
    expect(() => new CredentialProxyServer({ stores: memoryStores(), sessionId: '../../etc' })).toThrow(RangeError)
  })
})

describe('stop()', () => {
  test('answers what is in flight, then closes peers and removes the socket', async () => {
    const f = await startServer({ limits: { drainTimeoutMs: 5_000 } })
    cleanups.push(() => rm(f.dir, { recursive: true, force: true }))
    await f.stores.tokens.saveToken('anthropic', TOKEN)
    const c = await f.client()
    let release!: () => void
    f.stores.tokens.gate = new Promise<void>((resolve) => (release = resolve))
    c.send({ v: 3, id: 'held', op: 'get_token', payload: { provider: 'anthropic' } })
    await vi.waitFor(() => expect(f.server.peers()[0]?.inFlight).toBe(1), { timeout: 5_000, interval: 10 })
    const stopping = f.server.stop()
    // While draining, new requests are answered CANCELLED, never dropped.
    c.send({ v: 3, id: 'late', op: 'list_providers', payload: {} })
    expect(await c.answerTo('late')).toMatchObject({ ok: false, code: 'CANCELLED' })
    f.stores.tokens.gate = undefined
    release()
    expect(await c.answerTo('held')).toMatchObject({ ok: true })
    await stopping
    await c.waitClosed()
    expect(await exists(f.socketPath)).toBe(false)
  })

  test('a request still running at the drain deadline is answered CANCELLED', async () => {
    const f = await startServer({ limits: { drainTimeoutMs: 100 } })
    cleanups.push(() => rm(f.dir, { recursive: true, force: true }))
    const c = await f.client()
    f.stores.tokens.gate = new Promise<void>(() => undefined)
    c.send({ v: 3, id: 'stuck', op: 'get_token', payload: { provider: 'anthropic' } })
    await vi.waitFor(() => expect(f.server.peers()[0]?.inFlight).toBe(1), { timeout: 5_000, interval: 10 })
    await f.server.stop()
    expect(await c.answerTo('stuck')).toMatchObject({ ok: false, code: 'CANCELLED' })
    await c.waitClosed()
  })
})

describe('over the real host file store', () => {
  test('save_token from the sandbox keeps the stored refresh token; no refresh token crosses the socket', async () => {
    const home = await tempDir()
    const env = { ...process.env, CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' }
    const stores = await openHostStores({ env, paths: resolvePaths(env), log: () => undefined })
    await stores.tokens.saveToken('anthropic', TOKEN)
    await stores.keys.saveKey('OPENAI_API_KEY', 'sk-file')
    const f = await startServer({ stores, runtimeDir: resolvePaths(env).runtimeDir })
    cleanups.push(() => f.cleanup())
    const c = await f.client()
    expect((await c.request('get_token', { provider: 'anthropic' }))['data']).toMatchObject({ access_token: 'at-visible-1' })
    const saved = await c.request('save_token', {
      provider: 'anthropic',
      token: { access_token: 'at-rotated', expiry: TOKEN.expiry + 10, token_type: 'Bearer', refresh_token: 'rt-evil' },
    })
    expect(saved['ok']).toBe(true)
    const stored = await stores.tokens.getToken('anthropic')
    expect(stored).toMatchObject({ access_token: 'at-rotated', refresh_token: TOKEN.refresh_token })
    expect((await c.request('get_token', { provider: 'anthropic' }))['data']).toMatchObject({ access_token: 'at-rotated' })
    expect((await c.request('get_api_key', { name: 'OPENAI_API_KEY' }))['data']).toEqual({ key: 'sk-file' })
    expect((await c.request('get_bucket_stats', { provider: 'anthropic' }))['data']).toMatchObject({ requestCount: 2 })
    expect(c.receivedText()).not.toContain(TOKEN.refresh_token)
    expect(c.receivedText()).not.toContain('rt-evil')
    c.close()
  })
})
