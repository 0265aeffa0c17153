// Every process in a real bubblewrap sandbox authenticates, whoever started it:
// Node's child_process, Python's subprocess, npx, `npm run` and tsx pass no fd 3 on,
// so the secret must reach them another way (CREDPROXY_SECRET_FILE). Needs `npm run build`.
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, test } from 'vitest'
import { makeCliHome, removeCliHomes, runCli } from './helpers/cli-runner.js'

const CLI_PACKAGE = fileURLToPath(new URL('../', import.meta.url))
const TSX = fileURLToPath(new URL('../../../node_modules/tsx/dist/cli.mjs', import.meta.url))
const VALUE = 'handoff-key-value-7d1e'

afterEach(() => removeCliHomes())

/** A project dir with credproxy installed locally, as after `npm install` in a project. */
function linkInstall(cwd: string): void {
  mkdirSync(join(cwd, 'node_modules', '@credproxy'), { recursive: true })
  mkdirSync(join(cwd, 'node_modules', '.bin'), { recursive: true })
  symlinkSync(CLI_PACKAGE, join(cwd, 'node_modules', '@credproxy', 'cli'))
  symlinkSync('../@credproxy/cli/bin/credproxy.js', join(cwd, 'node_modules', '.bin', 'credproxy'))
}

async function runInside(command: string[], setup?: (cwd: string) => void): Promise<{ code: number; stdout: string; stderr: string }> {
  const { env, cwd } = await makeCliHome('cp-handoff-', async (stores) => stores.keys.saveKey('K', VALUE))
  setup?.(cwd)
  return runCli(['run', '--sandbox', 'bwrap', '--grant-key', 'K', '--', ...command], { env, cwd })
}

const NODE_PARENT = `const r = require('child_process').spawnSync('credproxy', ['key', 'get', 'K'], { encoding: 'utf8' })
console.log(JSON.stringify({ status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr }))`

const PYTHON_PARENT = `import json, subprocess
r = subprocess.run(['credproxy', 'key', 'get', 'K'], capture_output=True, text=True)
print(json.dumps({'status': r.returncode, 'signal': None, 'stdout': r.stdout, 'stderr': r.stderr}))`

function child(stdout: string): Record<string, unknown> {
  return JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as Record<string, unknown>
}

describe.runIf(process.platform === 'linux')('the secret reaches every process in a bwrap sandbox', () => {
  test('credproxy started by Node (spawnSync) gets the key; no abort', async () => {
    const result = await runInside(['node', '-e', NODE_PARENT])
    expect(result.code).toBe(0)
    expect(child(result.stdout)).toEqual({ status: 0, signal: null, stdout: `${VALUE}\n`, stderr: '' })
  })

  test('credproxy started by Python (subprocess.run) gets the key', async () => {
    const result = await runInside(['/usr/bin/python3', '-c', PYTHON_PARENT])
    expect(result.code).toBe(0)
    expect(child(result.stdout)).toEqual({ status: 0, signal: null, stdout: `${VALUE}\n`, stderr: '' })
  })

  test('`npx credproxy key get K` and `npm run` in a project with credproxy installed', async () => {
    const result = await runInside(['sh', '-c', 'npx --offline credproxy key get K && npm run --silent get'], (cwd) => {
      linkInstall(cwd)
      writeFileSync(join(cwd, 'package.json'), JSON.stringify({ name: 'p', private: true, scripts: { get: 'credproxy key get K' } }))
    })
    expect(result.stderr).toBe('')
    expect(result.stdout).toBe(`${VALUE}\n${VALUE}\n`)
    expect(result.code).toBe(0)
  })

  test("the README's Embedding snippet under tsx, started by `npm run`", async () => {
    const script = `import { createProviderKeyStorage } from '@credproxy/cli'
const keys = createProviderKeyStorage()
console.log(JSON.stringify({ key: await keys.getKey('K') }))
`
    const result = await runInside(['npm', 'run', '--silent', 'embed'], (cwd) => {
      linkInstall(cwd)
      writeFileSync(join(cwd, 'embed.mts'), script)
      writeFileSync(join(cwd, 'package.json'), JSON.stringify({ name: 'p', private: true, scripts: { embed: `node ${TSX} embed.mts` } }))
    })
    expect(result.stderr).toBe('')
    expect(child(result.stdout)).toEqual({ key: VALUE })
    expect(result.code).toBe(0)
  })
})

describe('--sandbox none', () => {
  test('credproxy started by Node (spawnSync) gets the key; the secret file is gone with the session', async () => {
    const { env, cwd, home } = await makeCliHome('cp-handoff-none-', async (stores) => stores.keys.saveKey('K', VALUE))
    const script = `${NODE_PARENT}
console.log(JSON.stringify({ file: process.env.CREDPROXY_SECRET_FILE }))`
    const result = await runCli(['run', '--sandbox', 'none', '--grant-key', 'K', '--', 'node', '-e', script], { env, cwd })
    expect(result.code).toBe(0)
    const [spawned, where] = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
    expect(spawned).toEqual({ status: 0, signal: null, stdout: `${VALUE}\n`, stderr: '' })
    const file = String(where?.['file'])
    expect(file.startsWith(home)).toBe(true)
    expect(existsSync(file)).toBe(false)
    expect(existsSync(dirname(file))).toBe(false)
  })
})
