// `credproxy exec`: a key goes into the child's env only, never its argv, on the
// host (file store) and inside a real bubblewrap sandbox (through the broker).
import { afterEach, describe, expect, test } from 'vitest'
import { makeCliHome, removeCliHomes, runCli, type CliHome } from './helpers/cli-runner.js'

const VALUE = 'exec-key-value-93b1'
afterEach(removeCliHomes)

const setup = (): Promise<CliHome> => makeCliHome('cp-exec-', (stores) => stores.keys.saveKey('K', VALUE))

// The child prints its env var and its own argv, so the test sees both.
const SHOW = ['node', '-e', 'console.log(JSON.stringify({ env: process.env.MY_KEY ?? null, argv: process.argv }))']

describe('credproxy exec', () => {
  test('on the host: the key is in the child env, not in its argv, and the exit code passes through', async () => {
    const { env, cwd } = await setup()
    const result = await runCli(['exec', '--key', 'MY_KEY=K', '--', ...SHOW], { env, cwd })
    expect(result.code).toBe(0)
    const shown = JSON.parse(result.stdout) as { env: string; argv: string[] }
    expect(shown.env).toBe(VALUE)
    expect(shown.argv.join(' ')).not.toContain(VALUE)
    expect((await runCli(['exec', '--key', 'MY_KEY=K', '--', 'sh', '-c', 'exit 5'], { env, cwd })).code).toBe(5)
  })

  test('a missing key exits 3 and says how to store it; the command does not run', async () => {
    const { env, cwd } = await setup()
    const result = await runCli(['exec', '--key', 'MY_KEY=NOPE', '--', 'sh', '-c', 'echo ran'], { env, cwd })
    expect(result.code).toBe(3)
    expect(result.stdout).not.toContain('ran')
    expect(result.stderr).toContain('credproxy key set NOPE')
  })

  test('inside `credproxy run`: the key comes through the broker', async () => {
    const { env, cwd } = await setup()
    const result = await runCli(['run', '--sandbox', 'bwrap', '--grant-key', 'K', '--', 'credproxy', 'exec', '--key', 'MY_KEY=K', '--', ...SHOW], { env, cwd })
    expect(result.code).toBe(0)
    expect((JSON.parse(result.stdout) as { env: string }).env).toBe(VALUE)
  })

  test('bad --key syntax is a usage error', async () => {
    const { env, cwd } = await setup()
    const result = await runCli(['exec', '--key', '1BAD=K', '--', 'true'], { env, cwd })
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('Use --key ENV=NAME')
  })
})
