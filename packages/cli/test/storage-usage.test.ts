// Usage counts (get_bucket_stats): counted in memory on the request path, merged into
// usage.json on a short debounce and on close(), correct across processes sharing
// the state dir. Real file stores under CREDPROXY_HOME=<mkdtemp>, keyring off.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, expect, test, vi } from 'vitest'
import { resolvePaths } from '../src/paths.js'
import { openHostStores } from '../src/storage/index.js'
import { LockDirectory } from '../src/storage/locks.js'
import { UsageStats } from '../src/storage/usage-stats.js'
import { startServer } from './helpers/server-fixture.js'

const TOKEN = { access_token: 'at-usage', refresh_token: 'rt-usage', expiry: 4_000_000_000, token_type: 'Bearer' }

let home: string
let env: NodeJS.ProcessEnv
beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), 'credproxy-usage-'))
  env = { CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' }
})
afterEach(async () => {
  await rm(home, { recursive: true, force: true })
})

const open = () => openHostStores({ env, log: () => undefined })

async function usageFile(): Promise<unknown> {
  return JSON.parse(await readFile(join(resolvePaths(env).stateDir, 'usage.json'), 'utf8'))
}

test('a process sees its own uses at once, and close() writes them for the next process', async () => {
  const stores = await open()
  await stores.tokens.saveToken('anthropic', TOKEN)
  for (let i = 0; i < 5; i++) await stores.tokens.recordUsage('anthropic', 'default')
  expect(await stores.tokens.getBucketStats('anthropic')).toMatchObject({ requestCount: 5, percentage: 100 })
  await stores.tokens.close?.()
  const next = await open()
  expect(await next.tokens.getBucketStats('anthropic')).toMatchObject({ requestCount: 5, lastUsed: expect.any(Number) })
})

test('two processes sharing a state dir: counts add up and lastUsed is the latest', async () => {
  const a = await open()
  const b = await open()
  await a.tokens.saveToken('p', TOKEN, 'x')
  await a.tokens.saveToken('p', TOKEN, 'y')
  for (let i = 0; i < 3; i++) await a.tokens.recordUsage('p', 'x')
  await a.tokens.close?.()
  const before = Date.now()
  await b.tokens.recordUsage('p', 'x')
  await b.tokens.recordUsage('p', 'y')
  // b sees what a wrote plus its own unwritten uses.
  expect(await b.tokens.getBucketStats('p', 'x')).toMatchObject({ requestCount: 4, percentage: 80 })
  await b.tokens.close?.()
  await a.tokens.recordUsage('p', 'x')
  await a.tokens.close?.()
  const x = await (await open()).tokens.getBucketStats('p', 'x')
  expect(x).toMatchObject({ requestCount: 5 })
  expect(x?.lastUsed).toBeGreaterThanOrEqual(before)
  expect(await (await open()).tokens.getBucketStats('p', 'y')).toMatchObject({ requestCount: 1 })
})

test('uses reach usage.json on their own shortly after, without close()', async () => {
  const paths = resolvePaths(env)
  const locks = await LockDirectory.open(paths.stateDir, () => undefined)
  const usage = new UsageStats(paths.stateDir, locks, () => undefined, 20)
  usage.record('anthropic', 'default', 1_000)
  usage.record('anthropic', 'default', 3_000)
  usage.record('anthropic', 'default', 2_000)
  await vi.waitFor(async () => {
    expect(await usageFile()).toEqual({
      version: 1,
      providers: { anthropic: { default: { requestCount: 3, lastUsed: 3_000 } } },
    })
  })
})

test('removing a token drops its unwritten uses: the bucket does not come back in usage.json', async () => {
  const stores = await open()
  await stores.tokens.saveToken('p', TOKEN, 'keep')
  await stores.tokens.saveToken('p', TOKEN, 'gone')
  await stores.tokens.recordUsage('p', 'keep')
  await stores.tokens.recordUsage('p', 'gone')
  await stores.tokens.removeToken('p', 'gone')
  await stores.tokens.close?.()
  expect(await usageFile()).toMatchObject({ providers: { p: { keep: { requestCount: 1 } } } })
  expect(JSON.stringify(await usageFile())).not.toContain('gone')
})

test('a usage file that cannot be written costs no token, keeps the counts, and says why in the host log', async () => {
  const logs: string[] = []
  const stores = await openHostStores({ env, log: (line) => logs.push(line) })
  await stores.tokens.saveToken('p', TOKEN)
  const { writeFile } = await import('node:fs/promises')
  await writeFile(join(resolvePaths(env).stateDir, 'usage.json'), 'not json', { mode: 0o600 })
  await stores.tokens.recordUsage('p', 'default')
  await stores.tokens.close?.()
  expect(logs.join('\n')).toMatch(/usage\.json .*not a valid usage file/)
  expect(await stores.tokens.getToken('p')).toMatchObject({ access_token: 'at-usage' })
  await rm(join(resolvePaths(env).stateDir, 'usage.json'))
  await stores.tokens.close?.()
  expect(await usageFile()).toMatchObject({ providers: { p: { default: { requestCount: 1 } } } })
})

test('through the broker: get_bucket_stats counts each get_token at once, and the counts survive stop + close', async () => {
  const stores = await open()
  await stores.tokens.saveToken('anthropic', TOKEN)
  const fx = await startServer({ stores })
  try {
    const c = await fx.client()
    for (let i = 0; i < 3; i++) expect(await c.request('get_token', { provider: 'anthropic' })).toMatchObject({ ok: true })
    expect((await c.request('get_bucket_stats', { provider: 'anthropic' }))['data']).toMatchObject({ requestCount: 3 })
  } finally {
    await fx.cleanup()
  }
  await stores.tokens.close?.()
  expect(await (await open()).tokens.getBucketStats('anthropic')).toMatchObject({ requestCount: 3 })
})

test('names that are Object.prototype members are counted like any other, and reserved names are refused, nothing polluted', async () => {
  const paths = resolvePaths(env)
  const locks = await LockDirectory.open(paths.stateDir, () => undefined)
  const usage = new UsageStats(paths.stateDir, locks)
  usage.record('hasOwnProperty', 'toString')
  usage.record('toString', 'valueOf')
  await usage.flush()
  expect(await usage.stats('hasOwnProperty', 'toString')).toMatchObject({ requestCount: 1, percentage: 100 })
  expect(await usage.stats('toString', 'valueOf')).toMatchObject({ requestCount: 1 })
  expect(await usage.stats('valueOf', 'default')).toMatchObject({ requestCount: 0, percentage: 0 })
  await usage.forget('hasOwnProperty', 'toString')
  expect(await usage.stats('hasOwnProperty', 'toString')).toMatchObject({ requestCount: 0 })
  expect(await usageFile()).toEqual({ version: 1, providers: { toString: { valueOf: { requestCount: 1, lastUsed: expect.any(Number) } } } })
  for (const [provider, bucket] of [['__proto__', 'hasOwnProperty'], ['constructor', 'hasOwn'], ['p', 'prototype']] as const) {
    expect(() => usage.record(provider, bucket)).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }))
    await expect(usage.forget(provider, bucket)).rejects.toMatchObject({ code: 'INVALID_REQUEST' })
    await expect(usage.stats(provider, bucket)).rejects.toMatchObject({ code: 'INVALID_REQUEST' })
  }
  expect(typeof Object.prototype.hasOwnProperty).toBe('function')
  expect(typeof Object.hasOwn).toBe('function')
  expect(Object.prototype.toString).not.toHaveProperty('valueOf', expect.objectContaining({ requestCount: expect.anything() }))
  expect(Object.prototype.hasOwnProperty).not.toHaveProperty('toString', expect.objectContaining({ requestCount: expect.anything() }))
  await usage.close()
})

test('a usage.json naming __proto__ or constructor never reaches a prototype: the entry is dropped or the file refused', async () => {
  const paths = resolvePaths(env)
  const locks = await LockDirectory.open(paths.stateDir, () => undefined)
  const usage = new UsageStats(paths.stateDir, locks)
  // zod skips a __proto__ key of a record; the entry is simply not there.
  await writeFile(join(paths.stateDir, 'usage.json'), '{"version":1,"providers":{"__proto__":{"polluted":{"requestCount":1}}}}\n', { mode: 0o600 })
  expect(await usage.stats('polluted', 'default')).toMatchObject({ requestCount: 0 })
  usage.record('p', 'default')
  await usage.flush()
  expect(await usageFile()).toEqual({ version: 1, providers: { p: { default: { requestCount: 1, lastUsed: expect.any(Number) } } } })
  await writeFile(join(paths.stateDir, 'usage.json'), '{"version":1,"providers":{"constructor":{"hasOwn":{"requestCount":1}}}}\n', { mode: 0o600 })
  await expect(usage.stats('p', 'default')).rejects.toThrow(/not a valid usage file/)
  expect(({} as Record<string, unknown>)['polluted']).toBeUndefined()
  expect(typeof Object.hasOwn).toBe('function')
})
