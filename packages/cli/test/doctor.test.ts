// `credproxy doctor`: a clean host passes; each planted problem (bad providers.json,
// a session leftover of a killed credproxy, no bwrap on PATH, credentials the backend
// in use cannot see) is reported with its fix and exit 1, and nothing is changed.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, describe, expect, test } from 'vitest'
import { EXIT } from '../src/exit-codes.js'
import { resolvePaths } from '../src/paths.js'
import { sessionsDir } from '../src/control/session-registry.js'
import { openHostStores } from '../src/storage/index.js'
import { makeCliHome, removeCliHomes, runCli } from './helpers/cli-runner.js'

afterAll(removeCliHomes)

const withSecretService = process.env['CREDPROXY_TEST_SECRET_SERVICE'] !== undefined

interface Report {
  ok: boolean
  checks: { name: string; ok: boolean; detail: string; fix?: string }[]
  credentials: { inUse: string | null; keyring: string[] | null; file: string[] }
}

async function doctor(env: NodeJS.ProcessEnv): Promise<{ code: number; report: Report; stderr: string }> {
  const result = await runCli(['doctor', '--json'], { env })
  return { code: result.code, report: JSON.parse(result.stdout) as Report, stderr: result.stderr }
}

function byName(report: Report, name: string): Report['checks'][number] | undefined {
  return report.checks.find((c) => c.name === name)
}

/** A socket file left behind by a process that was SIGKILLed while listening. */
async function deadSocket(path: string): Promise<void> {
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`])
  await new Promise((resolve) => child.on('exit', resolve))
  expect(existsSync(path)).toBe(true)
}

describe('credproxy doctor', () => {
  test('a clean host (files, bwrap): every check passes, exit 0, and no backend choice is written', async () => {
    const { env, home } = await makeCliHome('cp-doctor-', async (stores) => stores.keys.saveKey('OPENAI_API_KEY', 'sk-doctor-secret'))
    const { code, report } = await doctor(env)
    expect(report.checks.filter((c) => !c.ok)).toEqual([])
    expect(code).toBe(EXIT.OK)
    expect(report.checks.map((c) => c.name)).toEqual(['storage', 'keyring', 'credentials', 'bubblewrap', 'seccomp', 'providers', 'sessions'])
    expect(byName(report, 'storage')?.detail).toContain('CREDPROXY_KEYRING=off')
    expect(byName(report, 'credentials')?.detail).toBe('encrypted files: key:OPENAI_API_KEY')
    const human = await runCli(['doctor'], { env })
    expect(human.stdout).toMatch(/✓ bubblewrap +bwrap runs/)
    expect(human.stdout).toContain('No problems found.')
    expect(human.stdout + human.stderr).not.toContain('sk-doctor-secret')
    // makeCliHome's seeding wrote the choice; doctor on a home without one writes none.
    const bare = await makeCliHome('cp-doctor-bare-')
    await doctor({ ...bare.env, CREDPROXY_KEYRING: 'auto', DBUS_SESSION_BUS_ADDRESS: `unix:path=${join(bare.home, 'no-bus')}` })
    expect(existsSync(join(bare.home, 'config', 'storage.json'))).toBe(false)
    expect(existsSync(join(home, 'config', 'storage.json'))).toBe(true)
  })

  test('bad providers.json, leftovers of a killed session, no bwrap: each named with its fix, exit 1, nothing pruned', async () => {
    const { env } = await makeCliHome('cp-doctor-')
    const paths = resolvePaths(env)
    await mkdir(paths.configDir, { recursive: true, mode: 0o700 })
    await writeFile(join(paths.configDir, 'providers.json'), JSON.stringify({ providers: { github: { issuer: 'https://github.com' } } }), { mode: 0o600 })
    // A registry entry whose credproxy is gone, and a session directory with a dead socket.
    const deadPid = spawnSync('true').pid ?? 999_999
    await mkdir(sessionsDir(paths), { recursive: true, mode: 0o700 })
    const entry = join(sessionsDir(paths), 'deadbeef00000001.json')
    const record = { id: 'deadbeef00000001', pid: deadPid, socketPath: '/nonexistent', controlSocketPath: '/nonexistent', started: new Date().toISOString(), command: 'sh' }
    await writeFile(entry, JSON.stringify(record), { mode: 0o600 })
    const sessionDir = join(paths.runtimeDir, 'deadbeef00000002')
    await mkdir(sessionDir, { recursive: true, mode: 0o700 })
    await deadSocket(join(sessionDir, 'broker.sock'))

    const { code, report } = await doctor({ ...env, PATH: join(paths.configDir, 'no-bin') })
    expect(code).toBe(EXIT.FAILURE)
    expect(report.ok).toBe(false)
    expect(byName(report, 'providers')).toMatchObject({ ok: false, detail: expect.stringContaining('providers.github.client_id') as unknown, fix: expect.stringContaining('credproxy help oauth') as unknown })
    expect(byName(report, 'sessions')).toMatchObject({ ok: false, fix: 'credproxy sessions (it removes them)' })
    expect(byName(report, 'sessions')?.detail).toContain(`session deadbeef00000001 (pid ${deadPid} is gone)`)
    expect(byName(report, 'sessions')?.detail).toContain(`directory ${sessionDir} (dead socket)`)
    expect(byName(report, 'bubblewrap')).toMatchObject({ ok: false, detail: expect.stringContaining('bwrap is not installed') as unknown, fix: expect.stringContaining('bubblewrap') as unknown })
    // Read-only: the leftovers are still there for `credproxy sessions` to prune.
    expect(existsSync(entry)).toBe(true)
    expect(existsSync(join(sessionDir, 'broker.sock'))).toBe(true)
    const human = await runCli(['doctor'], { env })
    expect(human.stdout).toMatch(/✗ providers .*\n +fix: .*credproxy help oauth/)
    expect(human.stdout).toContain('2 problem(s) found.')
  })

  test.runIf(withSecretService)('keyring in use, a key left in the files: named (not its value), fix is key migrate', async () => {
    const { env } = await makeCliHome('cp-doctor-kr-', async (stores) => stores.keys.saveKey('LEFT_IN_FILES', 'v-left-secret'))
    const krEnv: NodeJS.ProcessEnv = {
      ...env,
      CREDPROXY_KEYRING: 'required',
      CREDPROXY_KEYRING_SERVICE: `credproxy-doctor-${process.pid}`,
      DBUS_SESSION_BUS_ADDRESS: process.env['DBUS_SESSION_BUS_ADDRESS'],
    }
    await (await openHostStores({ env: krEnv, log: () => {} })).keys.saveKey('IN_KEYRING', 'v-kr-secret')
    const { code, report } = await doctor(krEnv)
    expect(code).toBe(EXIT.FAILURE)
    expect(byName(report, 'keyring')?.ok).toBe(true)
    expect(byName(report, 'credentials')).toEqual({
      name: 'credentials',
      ok: false,
      detail: 'keyring: key:IN_KEYRING; 1 more in the encrypted files that commands do not see: key:LEFT_IN_FILES',
      fix: 'credproxy key migrate --to keyring',
    })
    expect(JSON.stringify(report)).not.toMatch(/v-left-secret|v-kr-secret/)
  })
})
