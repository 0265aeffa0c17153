// `credproxy token`: prints the access token only, on the host and inside a real
// bubblewrap sandbox; the refresh token never appears.
import { afterEach, describe, expect, test } from 'vitest'
import { makeCliHome, removeCliHomes, runCli, type CliHome } from './helpers/cli-runner.js'

const ACCESS = 'access-token-5e2a'
const REFRESH = 'refresh-token-must-stay-home-81c4'
afterEach(removeCliHomes)

function setup(expiry = Math.floor(Date.now() / 1000) + 3600): Promise<CliHome> {
  return makeCliHome('cp-token-', (stores) =>
    stores.tokens.saveToken('github', { access_token: ACCESS, refresh_token: REFRESH, token_type: 'Bearer', expiry }, 'default'),
  )
}

describe('credproxy token', () => {
  test('on the host: prints the access token and nothing else; --json has no refresh token', async () => {
    const { env, cwd } = await setup()
    const plain = await runCli(['token', 'github'], { env, cwd })
    expect(plain).toMatchObject({ code: 0, stdout: `${ACCESS}\n` })
    const json = await runCli(['token', 'github', '--json'], { env, cwd })
    expect(JSON.parse(json.stdout)).toMatchObject({ access_token: ACCESS, token_type: 'Bearer' })
    expect(json.stdout).not.toContain(REFRESH)
  })

  test('no token: exit 3 and the login command to run', async () => {
    const { env, cwd } = await setup()
    const result = await runCli(['token', 'gitlab', '--bucket', 'work'], { env, cwd })
    expect(result.code).toBe(3)
    expect(result.stderr).toContain('credproxy auth login gitlab --bucket work')
  })

  test('an expired token that cannot be refreshed: exit 5, log in again', async () => {
    const { env, cwd } = await setup(Math.floor(Date.now() / 1000) - 60)
    const result = await runCli(['token', 'github'], { env, cwd })
    expect(result.code).toBe(5)
    expect(result.stdout).toBe('')
  })

  test('inside `credproxy run --grant github`: the same output, through the broker', async () => {
    const { env, cwd } = await setup()
    const result = await runCli(['run', '--sandbox', 'bwrap', '--grant', 'github', '--', 'credproxy', 'token', 'github', '--json'], { env, cwd })
    expect(result.code).toBe(0)
    expect(JSON.parse(result.stdout)).toMatchObject({ access_token: ACCESS })
    expect(result.stdout + result.stderr).not.toContain(REFRESH)
  })

  test('inside without the grant: exit 4 and a hint naming --grant github', async () => {
    const { env, cwd } = await setup()
    const result = await runCli(['run', '--sandbox', 'bwrap', '--', 'credproxy', 'token', 'github'], { env, cwd })
    expect(result.code).toBe(4)
    expect(result.stdout).not.toContain(ACCESS)
    expect(result.stderr).toContain('--grant github')
  })
})
