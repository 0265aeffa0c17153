// The behavioural suite against a real Secret Service (gnome-keyring under
// scripts/with-secret-service.sh), and what only the keyring backend must show.
import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AsyncEntry, findCredentialsAsync } from '@napi-rs/keyring'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { openHostStores } from '../src/storage/index.js'
import { storageSuite, token } from './storage-suite.js'

const withSecretService = process.env['CREDPROXY_TEST_SECRET_SERVICE'] !== undefined
// Each test gets its own service name: parallel test files share one keyring.
const freshService = () => `credproxy-test-${randomBytes(6).toString('hex')}`

describe.runIf(withSecretService)('keyring backend (real Secret Service)', () => {
  storageSuite('keyring', () => ({ CREDPROXY_KEYRING: 'required', CREDPROXY_KEYRING_SERVICE: freshService() }))

  let home: string
  let service: string
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'credproxy-kr-'))
    service = freshService()
  })
  afterEach(async () => {
    await rm(home, { recursive: true, force: true })
  })

  test('auto picks the keyring, and entries follow the documented service/account naming', async () => {
    const logs: string[] = []
    const stores = await openHostStores({
      env: { CREDPROXY_HOME: home, CREDPROXY_KEYRING_SERVICE: service },
      log: (line) => logs.push(line),
    })
    expect(stores.backend).toBe('keyring')
    expect(logs).toEqual([])
    await stores.tokens.saveToken('anthropic', token({ access_token: 'kr-access' }), 'work')
    await stores.keys.saveKey('OPENAI_API_KEY', 'kr-key')
    const stored = await new AsyncEntry(service, 'token:anthropic:work').getPassword()
    expect(JSON.parse(stored ?? '{}')).toMatchObject({ access_token: 'kr-access' })
    expect(await new AsyncEntry(service, 'key:OPENAI_API_KEY').getPassword()).toBe('kr-key')
    expect(JSON.parse((await new AsyncEntry(service, 'index').getPassword()) ?? '{}')).toEqual({
      version: 1,
      records: ['key:OPENAI_API_KEY', 'token:anthropic:work'],
    })
    // The probe entry was deleted again.
    expect((await findCredentialsAsync(service)).map((c) => c.account).filter((a) => a.startsWith('probe:'))).toEqual([])
    await stores.keys.deleteKey('OPENAI_API_KEY')
    expect(await new AsyncEntry(service, 'key:OPENAI_API_KEY').getPassword()).toBeNull()
  })

  test('no secret reaches the disk: only locks and usage counts live in the state dir', async () => {
    const stores = await openHostStores({
      env: { CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'required', CREDPROXY_KEYRING_SERVICE: service },
      log: () => {},
    })
    await stores.tokens.saveToken('p', token({ access_token: 'DISK-CHECK-ACCESS', refresh_token: 'DISK-CHECK-REFRESH' }))
    await stores.keys.saveKey('K', 'DISK-CHECK-KEY')
    await stores.tokens.recordUsage('p', 'default')
    await stores.tokens.close?.() // usage counts reach usage.json on close
    const files: string[] = []
    const walk = async (dir: string): Promise<void> => {
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name)
        if (entry.isDirectory()) {
          expect((await stat(path)).mode & 0o777).toBe(0o700)
          await walk(path)
        } else files.push(path)
      }
    }
    await walk(home)
    // Lock files (flock) are empty and stay in state/locks.
    const locks = files.filter((f) => f.startsWith(join(home, 'state', 'locks')) && f.endsWith('.flock'))
    for (const lock of locks) expect((await stat(lock)).size).toBe(0)
    // The saved backend choice (storage.json) holds only the backend's name.
    expect(files.filter((f) => !locks.includes(f)).sort()).toEqual([join(home, 'config', 'storage.json'), join(home, 'state', 'usage.json')])
    expect(JSON.parse(await readFile(join(home, 'config', 'storage.json'), 'utf8'))).toEqual({ version: 1, backend: 'keyring' })
    const text = await readFile(files[0] ?? '', 'utf8')
    expect(text).not.toMatch(/DISK-CHECK/)
    expect((await stat(files[0] ?? '')).mode & 0o777).toBe(0o600)
  })

  test('a corrupt keyring entry is reported by its name, not read as empty', async () => {
    const stores = await openHostStores({
      env: { CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'required', CREDPROXY_KEYRING_SERVICE: service },
      log: () => {},
    })
    await stores.tokens.saveToken('p', token())
    await new AsyncEntry(service, 'token:p:default').setPassword('not json')
    await expect(stores.tokens.getToken('p')).rejects.toThrow(`keyring entry '${service}/token:p:default'`)
  })
})
