// CREDPROXY_KEYRING selection and stale-lock recovery.
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readdirSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { findCredentialsAsync } from '@napi-rs/keyring'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { exitCodeFor } from '../src/cli.js'
import { CredproxyError } from '../src/errors.js'
import { EXIT } from '../src/exit-codes.js'
import { openHostStores } from '../src/storage/index.js'

const withSecretService = process.env['CREDPROXY_TEST_SECRET_SERVICE'] !== undefined
const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url))

interface CliResult {
  code: number | null
  stdout: string
  stderr: string
}

/**
 * The built CLI where no Secret Service can be reached, even when this test runs
 * inside one (npm test): a fresh env whose D-Bus session address names a socket
 * that does not exist, so @napi-rs/keyring fails the way it does on a headless host.
 */
function cliWithoutKeyring(home: string, args: string[], env: NodeJS.ProcessEnv, stdin = ''): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: {
        PATH: process.env['PATH'],
        HOME: home,
        CREDPROXY_HOME: home,
        DBUS_SESSION_BUS_ADDRESS: `unix:path=${join(home, 'no-such-bus')}`,
        ...env,
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
    child.stdin.end(stdin)
  })
}

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
    expect(error).toBeInstanceOf(CredproxyError)
    expect((error as CredproxyError).message).toBe('CREDPROXY_KEYRING must be one of auto, off, required')
    expect(exitCodeFor(error as CredproxyError)).toBe(EXIT.USAGE)
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

  test('auto without a keyring falls back to files with one clear log line, once (the choice is saved)', async () => {
    const set = await cliWithoutKeyring(home, ['key', 'set', 'K'], {}, 'v-fallback')
    expect(set.code).toBe(EXIT.OK)
    // One log line, whose reason is @napi-rs/keyring's own failure, then the usual confirmation.
    const lines = set.stderr.trimEnd().split('\n')
    expect(lines).toHaveLength(2)
    expect(lines[0]).toMatch(/no OS keyring reachable \(.*DBus.*no-such-bus.*\); using encrypted files in .* from now on \(saved in .*storage\.json; this notice is shown once\).*key migrate --to keyring/)
    expect(lines[1]).toBe('Stored API key K (file).')
    expect(readdirSync(join(home, 'data', 'credentials')).filter((name) => name.endsWith('.enc'))).toHaveLength(1)
    // Later commands use the saved choice quietly (issue 13 bug 7: the notice used to repeat on every command).
    const get = await cliWithoutKeyring(home, ['key', 'get', 'K'], {})
    expect(get).toEqual({ code: EXIT.OK, stdout: 'v-fallback\n', stderr: '' })
    const list = await cliWithoutKeyring(home, ['key', 'list'], {})
    expect(list).toEqual({ code: EXIT.OK, stdout: 'K\n', stderr: '' })
  })

  test('a storage.json that does not validate is an error naming the file and the field, never a silent default', async () => {
    await mkdir(join(home, 'config'), { recursive: true, mode: 0o700 })
    await writeFile(join(home, 'config', 'storage.json'), JSON.stringify({ version: 1, backend: 'kwallet' }), { mode: 0o600 })
    const error = await openHostStores({ env: { CREDPROXY_HOME: home }, log: () => {} }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(CredproxyError)
    expect((error as CredproxyError).message).toMatch(new RegExp(`^${join(home, 'config', 'storage.json')}: field 'backend' is invalid`))
    expect((error as CredproxyError).hint).toContain('credproxy key migrate --to keyring|file')
  })

  test('a saved keyring that no longer answers is an error, not a silent switch to files', async () => {
    await mkdir(join(home, 'config'), { recursive: true, mode: 0o700 })
    await writeFile(join(home, 'config', 'storage.json'), JSON.stringify({ version: 1, backend: 'keyring' }), { mode: 0o600 })
    const result = await cliWithoutKeyring(home, ['key', 'list'], {})
    expect(result.code).toBe(EXIT.UNAVAILABLE)
    expect(result.stderr).toContain('your credentials are in the OS keyring (saved choice in')
    expect(result.stderr).toContain('CREDPROXY_KEYRING=off')
    expect(readdirSync(home)).not.toContain('data')
  })

  test('key migrate is refused inside a sandbox', async () => {
    const result = await cliWithoutKeyring(home, ['key', 'migrate', '--to', 'file'], { CREDPROXY_SOCKET: join(home, 'broker.sock') })
    expect(result.code).toBe(EXIT.USAGE)
    expect(result.stderr).toContain('`credproxy key migrate` works on the host only')
  })

  test('required without a keyring fails and says how to get one', async () => {
    const result = await cliWithoutKeyring(home, ['key', 'list'], { CREDPROXY_KEYRING: 'required' })
    expect(result.code).toBe(EXIT.UNAVAILABLE)
    expect(result.stderr).toContain('CREDPROXY_KEYRING=required but no OS keyring is reachable')
    expect(result.stderr).toMatch(/gnome-keyring.*CREDPROXY_KEYRING=off/)
    expect(result.stdout).toBe('')
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
