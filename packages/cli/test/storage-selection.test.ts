// CREDPROXY_KEYRING selection and stale-lock recovery.
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, utimes } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { findCredentialsAsync } from '@napi-rs/keyring'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { CliError } from '../src/cli-io.js'
import { EXIT } from '../src/exit-codes.js'
import { openHostStores } from '../src/storage/index.js'

const withSecretService = process.env['CREDPROXY_TEST_SECRET_SERVICE'] !== undefined

describe('backend selection', () => {
  let home: string
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'credproxy-select-'))
  })
  afterEach(async () => {
    await rm(home, { recursive: true, force: true })
  })

  test('an invalid CREDPROXY_KEYRING names the variable and the allowed values', async () => {
    const error = await openHostStores({ env: { CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'yes' } }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(CliError)
    expect((error as CliError).message).toBe('CREDPROXY_KEYRING must be one of auto, off, required')
    expect((error as CliError).exitCode).toBe(EXIT.USAGE)
  })

  test('an invalid CREDPROXY_KEYRING_SERVICE is refused', async () => {
    await expect(
      openHostStores({ env: { CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off', CREDPROXY_KEYRING_SERVICE: 'a b' } }),
    ).rejects.toThrow(/CREDPROXY_KEYRING_SERVICE/)
  })

  test('off uses encrypted files silently and never touches the keyring', async () => {
    const service = `credproxy-off-${randomBytes(4).toString('hex')}`
    const logs: string[] = []
    const stores = await openHostStores({
      env: { CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off', CREDPROXY_KEYRING_SERVICE: service },
      log: (line) => logs.push(line),
    })
    await stores.keys.saveKey('K', 'v')
    expect(stores.backend).toBe('file')
    expect(logs).toEqual([])
    if (withSecretService) expect(await findCredentialsAsync(service)).toEqual([])
  })

  test.runIf(!withSecretService)('auto without a keyring falls back to files with one clear log line', async () => {
    const logs: string[] = []
    const stores = await openHostStores({ env: { CREDPROXY_HOME: home }, log: (line) => logs.push(line) })
    expect(stores.backend).toBe('file')
    expect(logs).toHaveLength(1)
    expect(logs[0]).toMatch(/no OS keyring reachable .*using encrypted files in .*CREDPROXY_KEYRING=off/)
  })

  test.runIf(!withSecretService)('required without a keyring fails and says how to get one', async () => {
    const error = await openHostStores({ env: { CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'required' } }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(CliError)
    expect((error as CliError).exitCode).toBe(EXIT.UNAVAILABLE)
    expect((error as CliError).hint).toMatch(/gnome-keyring.*CREDPROXY_KEYRING=off/)
  })

  test.runIf(withSecretService)('auto and required pick the reachable keyring', async () => {
    for (const mode of ['auto', 'required']) {
      const stores = await openHostStores({
        env: { CREDPROXY_HOME: home, CREDPROXY_KEYRING: mode, CREDPROXY_KEYRING_SERVICE: `credproxy-sel-${mode}` },
        log: () => {},
      })
      expect(stores.backend).toBe('keyring')
    }
  })
})

describe('stale-lock recovery', () => {
  let home: string
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'credproxy-locks-'))
  })
  afterEach(async () => {
    await rm(home, { recursive: true, force: true })
  })

  test('a lock left by a crashed process is taken over once stale; a live one is not', async () => {
    const stores = await openHostStores({ env: { CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' }, log: () => {} })
    const lockDir = join(home, 'state', 'locks', 'refresh+token+p+default.lock')
    await mkdir(lockDir)
    expect(await stores.tokens.acquireRefreshLock('p', { waitMs: 100 })).toBe(false)
    const old = new Date(Date.now() - 60_000)
    await utimes(lockDir, old, old)
    expect(await stores.tokens.acquireRefreshLock('p', { waitMs: 100 })).toBe(true)
    await stores.tokens.releaseRefreshLock('p')
    // The same holds for the write lock every save takes.
    const writeLock = join(home, 'state', 'locks', 'write+token+p+default.lock')
    await mkdir(writeLock)
    await utimes(writeLock, old, old)
    await stores.tokens.saveToken('p', { access_token: 'a', expiry: 1, token_type: 'Bearer' })
    expect((await stores.tokens.getToken('p'))?.access_token).toBe('a')
  })
})
