// Issue 13 bug 4: keys stored while no keyring answered must not vanish when one
// appears, and `credproxy key migrate --to keyring|file` moves every credential
// without a moment where it exists nowhere: copy, read back, switch, then delete.
// Real Secret Service (scripts/with-secret-service.sh), real files, the built CLI
// for the runs that need no keyring or are killed midway.
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readFile, readdir, rm, rmdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { EXIT } from '../src/exit-codes.js'
import { openHostStores } from '../src/storage/index.js'
import { runCli } from './helpers/cli-runner.js'
import { token } from './storage-suite.js'

const withSecretService = process.env['CREDPROXY_TEST_SECRET_SERVICE'] !== undefined
const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url))

interface Spawned {
  code: number | null
  stdout: string
  stderr: string
}

/** The built CLI. noKeyring: a D-Bus address that names no socket, as on a headless host. */
function spawnCli(env: NodeJS.ProcessEnv, args: string[], options: { stdin?: string; noKeyring?: boolean; killOn?: RegExp } = {}): Promise<Spawned> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...env, ...(options.noKeyring === true ? { DBUS_SESSION_BUS_ADDRESS: `unix:path=${join(tmpdir(), 'no-such-bus')}` } : {}) },
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')))
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8')
      if (options.killOn?.test(stderr) === true) child.kill('SIGKILL')
    })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
    child.stdin.end(options.stdin ?? '')
  })
}

describe.runIf(withSecretService)('backend choice and key migrate (real Secret Service)', () => {
  let home: string
  let env: NodeJS.ProcessEnv
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'credproxy-migrate-'))
    env = {
      PATH: process.env['PATH'],
      HOME: home,
      CREDPROXY_HOME: home,
      CREDPROXY_KEYRING_SERVICE: `credproxy-mig-${randomBytes(6).toString('hex')}`,
      DBUS_SESSION_BUS_ADDRESS: process.env['DBUS_SESSION_BUS_ADDRESS'],
    }
  })
  afterEach(async () => {
    await rm(home, { recursive: true, force: true })
  })

  /** What each backend holds, read directly (required: the keyring; off: the files). */
  async function held(backend: 'keyring' | 'file', names: string[]): Promise<Record<string, string | null>> {
    const stores = await openHostStores({ env: { ...env, CREDPROXY_KEYRING: backend === 'keyring' ? 'required' : 'off' }, log: () => {} })
    const out: Record<string, string | null> = {}
    for (const name of names) out[name] = await stores.keys.getKey(name)
    return out
  }

  async function seed(backend: 'keyring' | 'file', keys: Record<string, string>): Promise<void> {
    const stores = await openHostStores({ env: { ...env, CREDPROXY_KEYRING: backend === 'keyring' ? 'required' : 'off' }, log: () => {} })
    for (const [name, value] of Object.entries(keys)) await stores.keys.saveKey(name, value)
  }

  async function savedChoice(): Promise<unknown> {
    return JSON.parse(await readFile(join(home, 'config', 'storage.json'), 'utf8'))
  }

  test('a key stored while no keyring answered is still listed once a keyring is reachable', async () => {
    const set = await spawnCli(env, ['key', 'set', 'OFFLINE_KEY'], { stdin: 'v-offline', noKeyring: true })
    expect(set.code).toBe(EXIT.OK)
    // Now the keyring answers: before issue 13 this said "No API keys stored".
    const list = await runCli(['key', 'list'], { env })
    expect(list).toMatchObject({ code: EXIT.OK, stdout: 'OFFLINE_KEY\n', stderr: '' })
    expect((await runCli(['key', 'get', 'OFFLINE_KEY'], { env })).stdout).toBe('v-offline\n')
  })

  test('an install from before the saved choice keeps its files and is told how to move them', async () => {
    await seed('file', { OLD_KEY: 'v-old' })
    await rm(join(home, 'config', 'storage.json'))
    const list = await runCli(['key', 'list'], { env })
    expect(list.stdout).toBe('OLD_KEY\n')
    expect(list.stderr).toMatch(/1 credential\(s\) are in encrypted files .*keeping them there.*credproxy key migrate --to keyring/)
    expect(await savedChoice()).toEqual({ version: 1, backend: 'file' })
    expect((await runCli(['key', 'list'], { env })).stderr).toBe('')
  })

  test('the keyring in use warns about credentials left in the files', async () => {
    await seed('file', { LEFT: 'v-left' })
    await rm(join(home, 'config', 'storage.json'))
    await seed('keyring', { IN_KEYRING: 'v-k' }) // required saves the keyring as the choice
    const list = await runCli(['key', 'list'], { env })
    expect(list.stdout).toBe('IN_KEYRING\n')
    expect(list.stderr).toMatch(/1 credential\(s\) are in encrypted files .*not visible.*credproxy key migrate --to keyring/)
  })

  test('migrate --to keyring and back: every key and token moves, values intact, the choice follows', async () => {
    await seed('file', { A: 'v-a', B: 'v-b' })
    const files = await openHostStores({ env: { ...env, CREDPROXY_KEYRING: 'off' }, log: () => {} })
    await files.tokens.saveToken('prov', token({ access_token: 'mig-access', refresh_token: 'mig-refresh' }), 'work')

    const toKeyring = await runCli(['key', 'migrate', '--to', 'keyring'], { env })
    expect(toKeyring.code).toBe(EXIT.OK)
    expect(toKeyring.stderr).toContain('Moved 3 credential(s) to the OS keyring')
    expect(toKeyring.stderr + toKeyring.stdout).not.toMatch(/v-a|v-b|mig-access|mig-refresh/)
    expect(await savedChoice()).toEqual({ version: 1, backend: 'keyring' })
    expect(await readdir(join(home, 'data', 'credentials'))).toEqual([])
    expect(await held('keyring', ['A', 'B'])).toEqual({ A: 'v-a', B: 'v-b' })
    expect((await runCli(['key', 'list'], { env })).stdout).toBe('A\nB\n')
    const kr = await openHostStores({ env, log: () => {} })
    expect(kr.backend).toBe('keyring')
    expect(await kr.tokens.getToken('prov', 'work')).toMatchObject({ access_token: 'mig-access', refresh_token: 'mig-refresh' })

    const toFile = await runCli(['key', 'migrate', '--to', 'file'], { env })
    expect(toFile.code).toBe(EXIT.OK)
    expect(await savedChoice()).toEqual({ version: 1, backend: 'file' })
    expect(await held('keyring', ['A', 'B'])).toEqual({ A: null, B: null })
    expect(await held('file', ['A', 'B'])).toEqual({ A: 'v-a', B: 'v-b' })
    expect((await runCli(['auth', 'status', '--json'], { env })).stdout).toContain('"prov"')
  })

  test('--to file failing midway deletes nothing and keeps the keyring as the choice; a rerun finishes', async () => {
    await seed('keyring', { A: 'v-a', B: 'v-b', C: 'v-c' })
    // A directory where B's file must go: a real write failure after A was copied.
    await mkdir(join(home, 'data', 'credentials', 'key+B.enc'), { recursive: true })
    const failed = await runCli(['key', 'migrate', '--to', 'file'], { env })
    expect(failed.code).toBe(EXIT.FAILURE)
    expect(failed.stderr).toContain('copied key:A')
    expect(failed.stderr).toMatch(/1 of 3 credential\(s\) could not be copied \(key:B: .*\); nothing was deleted and the backend in use is unchanged/)
    expect(await held('keyring', ['A', 'B', 'C'])).toEqual({ A: 'v-a', B: 'v-b', C: 'v-c' })
    expect(await savedChoice()).toEqual({ version: 1, backend: 'keyring' })

    await rmdir(join(home, 'data', 'credentials', 'key+B.enc'))
    const rerun = await runCli(['key', 'migrate', '--to', 'file'], { env })
    expect(rerun.code).toBe(EXIT.OK)
    expect(await held('file', ['A', 'B', 'C'])).toEqual({ A: 'v-a', B: 'v-b', C: 'v-c' })
    expect(await held('keyring', ['A', 'B', 'C'])).toEqual({ A: null, B: null, C: null })
  })

  test('--to keyring with a different value already in the keyring keeps both and says which', async () => {
    await seed('file', { A: 'v-a', B: 'v-b-file', C: 'v-c' })
    await seed('keyring', { B: 'v-b-keyring' })
    const failed = await runCli(['key', 'migrate', '--to', 'keyring'], { env })
    expect(failed.code).toBe(EXIT.FAILURE)
    expect(failed.stderr).toMatch(/key:B: keyring entry .* already holds a different value/)
    expect(await held('file', ['A', 'B', 'C'])).toEqual({ A: 'v-a', B: 'v-b-file', C: 'v-c' })
    expect((await held('keyring', ['B'])).B).toBe('v-b-keyring')
  })

  test.each([
    ['keyring', 'while copying', /copied key:K0/],
    ['keyring', 'while deleting the old copies', /saved the choice/],
    ['file', 'while copying', /copied key:K0/],
    ['file', 'while deleting the old copies', /saved the choice/],
  ] as const)('--to %s killed %s: every key still exists somewhere, and a rerun completes', async (to, _when, killOn) => {
    const from = to === 'keyring' ? 'file' : 'keyring'
    const keys = Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`K${i}`, `v-${i}`]))
    const names = Object.keys(keys)
    await seed(from, keys)
    const killed = await spawnCli(env, ['key', 'migrate', '--to', to], { killOn })
    expect(killed.code).toBeNull() // SIGKILL: no cleanup ran
    const inSource = await held(from, names)
    const inTarget = await held(to, names)
    for (const name of names) expect(inSource[name] ?? inTarget[name]).toBe(keys[name])
    const rerun = await runCli(['key', 'migrate', '--to', to], { env })
    expect(rerun.code).toBe(EXIT.OK)
    expect(await held(to, names)).toEqual(keys)
    expect(Object.values(await held(from, names)).every((value) => value === null)).toBe(true)
  })
})
