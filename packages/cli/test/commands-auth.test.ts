// `credproxy auth import|status|logout` run in-process through main(), on a fresh file store.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { relativeTime } from '../src/commands/auth.js'
import { EXIT } from '../src/exit-codes.js'
import { openHostStores } from '../src/storage/index.js'
import { runCli, type CliResult } from './helpers/cli-runner.js'

const ACCESS = 'ya29.ACCESS-must-not-show'
const REFRESH = '1//REFRESH-must-not-show'

describe('credproxy auth', () => {
  let home: string
  let env: NodeJS.ProcessEnv
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'credproxy-auth-cmd-'))
    env = { CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' }
  })
  afterEach(async () => {
    await rm(home, { recursive: true, force: true })
  })

  const cli = (argv: string[], piped = ''): Promise<CliResult> => runCli(argv, { env, cwd: '/', stdin: piped })

  const inAnHour = () => Math.floor(Date.now() / 1000) + 3600

  test('import stores the token with extras; status shows expiry and backend but no secret', async () => {
    const token = { access_token: ACCESS, refresh_token: REFRESH, expiry: inAnHour(), token_type: 'Bearer', account_id: 'acct-1' }
    const imported = await cli(['auth', 'import', 'anthropic'], JSON.stringify(token))
    expect(imported.code).toBe(EXIT.OK)
    expect(imported.stderr).toMatch(/Imported token for anthropic\/default \(expires in 60 min, refresh token stored, file\)/)
    await cli(['auth', 'import', 'anthropic', '--bucket', 'work'], JSON.stringify({ ...token, expiry: 1_000, refresh_token: undefined }))
    const stores = await openHostStores({ env, log: () => {} })
    expect(await stores.tokens.getToken('anthropic')).toEqual(token)

    const status = await cli(['auth', 'status'])
    expect(status.code).toBe(EXIT.OK)
    expect(status.stdout).toMatch(/^Backend: file\nanthropic\n {2}default +expires in 60 min, refreshable\n {2}work +expired \d+ d ago, no refresh token\n$/)
    const json = await cli(['auth', 'status', 'anthropic', '--json'])
    const parsed = JSON.parse(json.stdout) as { backend: string; providers: { provider: string; buckets: { bucket: string; expired: boolean }[] }[] }
    expect(parsed.backend).toBe('file')
    expect(parsed.providers[0]?.buckets.map((b) => [b.bucket, b.expired])).toEqual([
      ['default', false],
      ['work', true],
    ])
    for (const out of [imported, status, json]) {
      for (const secret of [ACCESS, REFRESH, 'ya29', '1//REF']) expect(out.stdout + out.stderr).not.toContain(secret)
    }
  })

  test('expires_in is accepted in place of expiry', async () => {
    expect((await cli(['auth', 'import', 'gh'], JSON.stringify({ access_token: 'a', token_type: 'Bearer', expires_in: 7200 }))).code).toBe(EXIT.OK)
    expect((await cli(['auth', 'status', 'gh'])).stdout).toContain('expires in 2 h')
  })

  test('bad token JSON is refused naming the bad field, and nothing is stored', async () => {
    const missing = await cli(['auth', 'import', 'p'], JSON.stringify({ access_token: ACCESS, token_type: 'Bearer' }))
    expect(missing.code).toBe(EXIT.USAGE)
    expect(missing.stderr).toContain("token field 'expiry' is invalid")
    expect(missing.stderr).not.toContain(ACCESS)
    const wrongType = await cli(['auth', 'import', 'p'], JSON.stringify({ access_token: 42, token_type: 'Bearer', expiry: 1 }))
    expect(wrongType.stderr).toContain("token field 'access_token' is invalid")
    const notJson = await cli(['auth', 'import', 'p'], `{"access_token": "${ACCESS}"`)
    expect(notJson.code).toBe(EXIT.USAGE)
    expect(notJson.stderr).toContain('stdin is not valid JSON')
    expect(notJson.stderr).not.toContain(ACCESS)
    expect((await cli(['auth', 'status', '--json'])).stdout).toBe('{"backend":"file","providers":[]}\n')
  })

  test('logout removes one bucket; a missing one exits 3', async () => {
    const token = JSON.stringify({ access_token: 'a', expiry: inAnHour(), token_type: 'Bearer' })
    await cli(['auth', 'import', 'p'], token)
    await cli(['auth', 'import', 'p', '--bucket', 'b'], token)
    const out = await cli(['auth', 'logout', 'p', '--bucket', 'b'])
    expect(out).toMatchObject({ code: EXIT.OK, stderr: 'Logged out of p/b.\n' })
    expect((await cli(['auth', 'logout', 'p', '--bucket', 'b'])).code).toBe(EXIT.NOT_FOUND)
    expect((await cli(['auth', 'status'])).stdout).toMatch(/^Backend: file\np\n {2}default /)
    expect((await cli(['auth', 'logout', 'p'])).code).toBe(EXIT.OK)
    const none = await cli(['auth', 'status', 'p'])
    expect(none.code).toBe(EXIT.NOT_FOUND)
    expect(none.stderr).toContain('credproxy auth import p')
  })

  test('status reports an unreadable token by path and exits 1, still listing the rest', async () => {
    const token = JSON.stringify({ access_token: 'a', expiry: inAnHour(), token_type: 'Bearer' })
    await cli(['auth', 'import', 'good'], token)
    await cli(['auth', 'import', 'bad'], token)
    await writeFile(join(home, 'data', 'credentials', 'token+bad+default.enc'), 'garbage')
    const status = await cli(['auth', 'status'])
    expect(status.code).toBe(EXIT.FAILURE)
    expect(status.stdout).toContain(`unreadable: ${join(home, 'data', 'credentials', 'token+bad+default.enc')}`)
    expect(status.stdout).toMatch(/good\n {2}default +expires in/)
  })

  test('usage errors: missing provider, bad bucket, unknown subcommand; --help has examples', async () => {
    expect((await cli(['auth', 'import'], '{}')).code).toBe(EXIT.USAGE)
    expect((await cli(['auth', 'logout', 'p', '--bucket', 'a/b'])).code).toBe(EXIT.USAGE)
    const unknown = await cli(['auth', 'frobnicate'])
    expect(unknown.code).toBe(EXIT.USAGE)
    expect(unknown.stderr).toContain('login, status, import, logout')
    const help = await cli(['auth', '--help'])
    expect(help.stdout).toContain('credproxy auth import anthropic < token.json')
  })

  test('relative times read naturally', () => {
    expect(relativeTime(30)).toBe('in 30 s')
    expect(relativeTime(-600)).toBe('10 min ago')
    expect(relativeTime(3 * 3600)).toBe('in 3 h')
    expect(relativeTime(-3 * 86_400)).toBe('3 d ago')
  })
})
