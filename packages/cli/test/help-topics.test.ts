// `credproxy help oauth`: text that ships with the package, whose worked GitHub
// providers.json is accepted by the real loader, and the hints that point at it.
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, describe, expect, test } from 'vitest'
import { EXIT } from '../src/exit-codes.js'
import { loadProvidersConfig } from '../src/oauth/provider-config.js'
import { resolvePaths } from '../src/paths.js'
import { makeCliHome, removeCliHomes, runCli } from './helpers/cli-runner.js'

afterAll(removeCliHomes)

/** The JSON object in the help text: from a line that is `{` to the next line that is `}`. */
function jsonBlock(text: string): string {
  const lines = text.split('\n')
  const start = lines.indexOf('{')
  const end = lines.indexOf('}', start)
  if (start === -1 || end === -1) throw new Error('no JSON block in the help text')
  return lines.slice(start, end + 1).join('\n')
}

describe('credproxy help oauth', () => {
  test('prints the worked GitHub example, which the real providers.json loader accepts', async () => {
    const { env } = await makeCliHome('cp-help-oauth-')
    const result = await runCli(['help', 'oauth'], { env })
    expect(result.code).toBe(EXIT.OK)
    expect(result.stderr).toBe('')
    expect(result.stdout).toContain('GitHub, device flow (needs only a client id')
    const paths = resolvePaths(env)
    await mkdir(paths.configDir, { recursive: true, mode: 0o700 })
    await writeFile(join(paths.configDir, 'providers.json'), jsonBlock(result.stdout), { mode: 0o600 })
    const config = await loadProvidersConfig(paths)
    const github = config?.providers.get('github')
    expect(github?.flows).toEqual(['device_code'])
    expect(github?.client_secret).toBeUndefined()
    expect(github?.device_authorization_endpoint).toBe('https://github.com/login/device/code')
  })

  test('credproxy --help names the topic', async () => {
    expect((await runCli(['--help'], { env: { PATH: '/usr/bin:/bin' } })).stdout).toContain('`credproxy help oauth`')
  })

  test('logging in to an unconfigured provider points at `credproxy help oauth`, not at a repository path', async () => {
    const { env } = await makeCliHome('cp-help-oauth-')
    const result = await runCli(['auth', 'login', 'github'], { env })
    expect(result.code).toBe(EXIT.NOT_FOUND)
    expect(result.stderr).toContain('`credproxy help oauth`')
    expect(result.stderr).not.toContain('dev-docs/')
  })

  test('a providers.json with a bad field points at `credproxy help oauth`', async () => {
    const { env } = await makeCliHome('cp-help-oauth-')
    const paths = resolvePaths(env)
    await mkdir(paths.configDir, { recursive: true, mode: 0o700 })
    await writeFile(join(paths.configDir, 'providers.json'), JSON.stringify({ providers: { github: { client_id: 'x' } } }), { mode: 0o600 })
    const result = await runCli(['auth', 'login', 'github'], { env })
    expect(result.stderr).toContain('providers.github.issuer')
    expect(result.stderr).toContain('`credproxy help oauth`')
  })
})
