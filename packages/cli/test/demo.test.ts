// `credproxy demo` end to end in a real bubblewrap sandbox, plus a smoke test of
// the built binary's help.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, test } from 'vitest'
import { main } from '../src/cli.js'
import { openHostStores } from '../src/storage/index.js'

const BIN = fileURLToPath(new URL('../bin/credproxy.js', import.meta.url))
const dirs: string[] = []
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

describe('credproxy demo', () => {
  test('every check passes in a real sandbox and the throwaway credentials are gone afterwards', async () => {
    const home = mkdtempSync(join(tmpdir(), 'cp-demo-'))
    dirs.push(home)
    const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/root', CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' }
    const stdout = new PassThrough()
    let out = ''
    stdout.on('data', (d: Buffer) => (out += d.toString()))
    const stdin = new PassThrough()
    stdin.end()
    const code = await main(['demo', '--json'], { stdin, stdout, stderr: new PassThrough(), env, cwd: home })
    const report = JSON.parse(out) as { ok: boolean; checks: Array<{ ok: boolean; label: string }> }
    expect(report.checks.filter((c) => !c.ok)).toEqual([])
    expect(report.checks.map((c) => c.label).join('\n')).toMatch(/refresh token: not in/)
    // The egress part: the placeholder got through with the real key injected on the host; a host without a rule was refused.
    const labels = report.checks.map((c) => c.label).join('\n')
    expect(labels).toMatch(/egress: fetch to https:\/\/api\.credproxy-demo\.test\/ with the placeholder -> 200; the upstream got the real key/)
    expect(labels).toMatch(/egress: https:\/\/other\.credproxy-demo\.test\/ \(no rule\) refused/)
    expect(labels).toMatch(/the egress key \(injected on the host only\): not in/)
    expect(code).toBe(0)
    const stores = await openHostStores({ env, log: () => undefined })
    expect(await stores.keys.listKeys()).toEqual([])
    expect(await stores.tokens.getToken('credproxy-demo')).toBeNull()
  })

  test('the human output is readable and has no colour codes when NO_COLOR is set', () => {
    const home = mkdtempSync(join(tmpdir(), 'cp-demo-'))
    dirs.push(home)
    const result = spawnSync(process.execPath, [BIN, 'demo'], {
      env: { PATH: process.env['PATH'], HOME: process.env['HOME'], CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off', NO_COLOR: '1' },
      encoding: 'utf8',
    })
    expect(result.stdout).toContain('credproxy demo: all checks passed')
    expect(result.stdout).not.toContain('\u001b[')
    expect(result.status).toBe(0)
  })
})

describe('built binary', () => {
  test('--help lists the sandbox commands; each has examples', () => {
    const top = spawnSync(process.execPath, [BIN, '--help'], { encoding: 'utf8' })
    expect(top.status).toBe(0)
    for (const name of ['run', 'exec', 'token', 'demo']) expect(top.stdout).toMatch(new RegExp(`^  ${name} `, 'm'))
    for (const name of ['run', 'exec', 'token', 'demo']) {
      const help = spawnSync(process.execPath, [BIN, name, '--help'], { encoding: 'utf8' })
      expect(help.status).toBe(0)
      expect(help.stdout).toContain('Example')
    }
  })
})
