// `credproxy token`: prints the access token only, on the host and inside a real
// bubblewrap sandbox; the refresh token never appears.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { afterEach, describe, expect, test } from 'vitest'
import { main } from '../src/cli.js'
import { openHostStores } from '../src/storage/index.js'

const ACCESS = 'access-token-5e2a'
const REFRESH = 'refresh-token-must-stay-home-81c4'
const dirs: string[] = []
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

async function setup(expiry = Math.floor(Date.now() / 1000) + 3600): Promise<{ env: NodeJS.ProcessEnv; cwd: string }> {
  const home = mkdtempSync(join(tmpdir(), 'cp-token-'))
  const cwd = mkdtempSync(join(tmpdir(), 'cp-token-cwd-'))
  dirs.push(home, cwd)
  const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/root', CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' }
  const stores = await openHostStores({ env, log: () => undefined })
  await stores.tokens.saveToken('github', { access_token: ACCESS, refresh_token: REFRESH, token_type: 'Bearer', expiry }, 'default')
  return { env, cwd }
}

async function cli(argv: string[], env: NodeJS.ProcessEnv, cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  let out = ''
  let err = ''
  stdout.on('data', (d: Buffer) => (out += d.toString()))
  stderr.on('data', (d: Buffer) => (err += d.toString()))
  const stdin = new PassThrough()
  stdin.end()
  return { code: await main(argv, { stdin, stdout, stderr, env, cwd }), stdout: out, stderr: err }
}

describe('credproxy token', () => {
  test('on the host: prints the access token and nothing else; --json has no refresh token', async () => {
    const { env, cwd } = await setup()
    const plain = await cli(['token', 'github'], env, cwd)
    expect(plain).toMatchObject({ code: 0, stdout: `${ACCESS}\n` })
    const json = await cli(['token', 'github', '--json'], env, cwd)
    expect(JSON.parse(json.stdout)).toMatchObject({ access_token: ACCESS, token_type: 'Bearer' })
    expect(json.stdout).not.toContain(REFRESH)
  })

  test('no token: exit 3 and the login command to run', async () => {
    const { env, cwd } = await setup()
    const result = await cli(['token', 'gitlab', '--bucket', 'work'], env, cwd)
    expect(result.code).toBe(3)
    expect(result.stderr).toContain('credproxy auth login gitlab --bucket work')
  })

  test('an expired token that cannot be refreshed: exit 5, log in again', async () => {
    const { env, cwd } = await setup(Math.floor(Date.now() / 1000) - 60)
    const result = await cli(['token', 'github'], env, cwd)
    expect(result.code).toBe(5)
    expect(result.stdout).toBe('')
  })

  test('inside `credproxy run --grant github`: the same output, through the broker', async () => {
    const { env, cwd } = await setup()
    const result = await cli(['run', '--sandbox', 'bwrap', '--grant', 'github', '--', 'credproxy', 'token', 'github', '--json'], env, cwd)
    expect(result.code).toBe(0)
    expect(JSON.parse(result.stdout)).toMatchObject({ access_token: ACCESS })
    expect(result.stdout + result.stderr).not.toContain(REFRESH)
  })

  test('inside without the grant: exit 4 and a hint naming --grant github', async () => {
    const { env, cwd } = await setup()
    const result = await cli(['run', '--sandbox', 'bwrap', '--', 'credproxy', 'token', 'github'], env, cwd)
    expect(result.code).toBe(4)
    expect(result.stdout).not.toContain(ACCESS)
    expect(result.stderr).toContain('--grant github')
  })
})
