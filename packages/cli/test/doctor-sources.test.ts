// `credproxy doctor` and sources.json: parsed always, run only with --run-sources,
// reporting timing and outcome, never the value.
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, test } from 'vitest'
import { sourcesFilePath } from '../src/credentials/sources-config.js'
import { resolvePaths } from '../src/paths.js'
import { makeCliHome, removeCliHomes, runCli } from './helpers/cli-runner.js'
import type { DoctorCheck } from '../src/commands/doctor.js'

afterEach(removeCliHomes)

async function homeWithSources(): Promise<{ env: NodeJS.ProcessEnv; cwd: string; runs: () => number }> {
  const { env, cwd, home } = await makeCliHome('cp-doctor-sources-')
  const runsFile = join(home, 'runs')
  const ok = join(home, 'ok.sh')
  const bad = join(home, 'bad.sh')
  writeFileSync(ok, `#!/bin/sh\necho run >> '${runsFile}'\nprintf '{"value":"doctor-secret-value","expires_in":600}'\n`)
  writeFileSync(bad, `#!/bin/sh\necho run >> '${runsFile}'\necho 'vault: token expired' >&2\nexit 2\n`)
  chmodSync(ok, 0o755)
  chmodSync(bad, 0o755)
  const paths = resolvePaths(env)
  mkdirSync(paths.configDir, { recursive: true })
  writeFileSync(sourcesFilePath(paths), JSON.stringify({ keys: { GOOD: { command: [ok, 'secret-arg'], output: 'json' }, BAD: { command: [bad] } } }))
  const runs = (): number => {
    try {
      return readFileSync(runsFile, 'utf8').split('\n').filter(Boolean).length
    } catch {
      return 0
    }
  }
  return { env, cwd, runs }
}

function checks(stdout: string): DoctorCheck[] {
  return (JSON.parse(stdout) as { checks: DoctorCheck[] }).checks
}

describe('credproxy doctor and sources', () => {
  test('without --run-sources the sources are listed (program only) and not run', async () => {
    const { env, cwd, runs } = await homeWithSources()
    const result = await runCli(['doctor', '--json'], { env, cwd })
    const sources = checks(result.stdout).find((c) => c.name === 'sources')
    expect(sources?.ok).toBe(true)
    expect(sources?.detail).toContain('GOOD (command ok.sh)')
    expect(sources?.detail).toContain('--run-sources')
    expect(result.stdout).not.toContain('secret-arg')
    expect(runs()).toBe(0)
  })

  test('--run-sources runs each once: timing and expiry for a good one, exit code and stderr for a failing one, never the value', async () => {
    const { env, cwd, runs } = await homeWithSources()
    const result = await runCli(['doctor', '--run-sources'], { env, cwd })
    expect(result.code).toBe(1)
    expect(runs()).toBe(2)
    expect(result.stdout).toMatch(/✓ source GOOD command ok\.sh: a value of 19 characters in \d+ ms, expires \d{4}-/)
    expect(result.stdout).toMatch(/✗ source BAD {2}command bad\.sh: exited with 2 after \d+ ms; stderr: vault: token expired/)
    expect(result.stdout + result.stderr).not.toContain('doctor-secret-value')
  })

  test('an invalid sources.json is a problem naming the file and field', async () => {
    const { env, cwd } = await makeCliHome('cp-doctor-sources-')
    const paths = resolvePaths(env)
    mkdirSync(paths.configDir, { recursive: true })
    writeFileSync(sourcesFilePath(paths), JSON.stringify({ keys: { A: { command: [] } } }))
    const sources = checks((await runCli(['doctor', '--json'], { env, cwd })).stdout).find((c) => c.name === 'sources')
    expect(sources).toMatchObject({ ok: false, detail: `${sourcesFilePath(paths)}: invalid field keys.A.command: Too small: expected array to have >=1 items` })
  })
})
