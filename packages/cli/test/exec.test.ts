// `credproxy exec`: a key goes into the child's env only, never its argv, on the
// host (file store) and inside a real bubblewrap sandbox (through the broker).
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { afterEach, describe, expect, test } from 'vitest'
import { main } from '../src/cli.js'
import { openHostStores } from '../src/storage/index.js'

const VALUE = 'exec-key-value-93b1'
const dirs: string[] = []
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

async function setup(): Promise<{ env: NodeJS.ProcessEnv; cwd: string }> {
  const home = mkdtempSync(join(tmpdir(), 'cp-exec-'))
  const cwd = mkdtempSync(join(tmpdir(), 'cp-exec-cwd-'))
  dirs.push(home, cwd)
  const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/root', CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' }
  await (await openHostStores({ env, log: () => undefined })).keys.saveKey('K', VALUE)
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

// The child prints its env var and its own argv, so the test sees both.
const SHOW = ['node', '-e', 'console.log(JSON.stringify({ env: process.env.MY_KEY ?? null, argv: process.argv }))']

describe('credproxy exec', () => {
  test('on the host: the key is in the child env, not in its argv, and the exit code passes through', async () => {
    const { env, cwd } = await setup()
    const result = await cli(['exec', '--key', 'MY_KEY=K', '--', ...SHOW], env, cwd)
    expect(result.code).toBe(0)
    const shown = JSON.parse(result.stdout) as { env: string; argv: string[] }
    expect(shown.env).toBe(VALUE)
    expect(shown.argv.join(' ')).not.toContain(VALUE)
    expect((await cli(['exec', '--key', 'MY_KEY=K', '--', 'sh', '-c', 'exit 5'], env, cwd)).code).toBe(5)
  })

  test('a missing key exits 3 and says how to store it; the command does not run', async () => {
    const { env, cwd } = await setup()
    const result = await cli(['exec', '--key', 'MY_KEY=NOPE', '--', 'sh', '-c', 'echo ran'], env, cwd)
    expect(result.code).toBe(3)
    expect(result.stdout).not.toContain('ran')
    expect(result.stderr).toContain('credproxy key set NOPE')
  })

  test('inside `credproxy run`: the key comes through the broker', async () => {
    const { env, cwd } = await setup()
    const result = await cli(['run', '--sandbox', 'bwrap', '--grant-key', 'K', '--', 'credproxy', 'exec', '--key', 'MY_KEY=K', '--', ...SHOW], env, cwd)
    expect(result.code).toBe(0)
    expect((JSON.parse(result.stdout) as { env: string }).env).toBe(VALUE)
  })

  test('bad --key syntax is a usage error', async () => {
    const { env, cwd } = await setup()
    const result = await cli(['exec', '--key', '1BAD=K', '--', 'true'], env, cwd)
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('Use --key ENV=NAME')
  })
})
