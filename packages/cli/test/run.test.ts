// `credproxy run` in a real bubblewrap sandbox against the real broker, in-process
// through main(); the signal test spawns the built binary. Needs `npm run build`
// (the sandbox runs the built `credproxy`).
import { spawn } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeAll, describe, expect, test } from 'vitest'
import { NONE_WARNING } from '../src/sandbox/select.js'
import { makeCliHome, removeCliHomes, runCli, type CliHome } from './helpers/cli-runner.js'

const BIN = fileURLToPath(new URL('../bin/credproxy.js', import.meta.url))
const PROBE = fileURLToPath(new URL('./fixtures/sandbox-probe.mjs', import.meta.url))
const SUBREAPER_PARENT = fileURLToPath(new URL('./fixtures/subreaper-parent.mjs', import.meta.url))
const KEY_VALUE = 'granted-key-value-4f1c9a'
const OTHER_VALUE = 'ungranted-key-value-77d2e0'

afterEach(removeCliHomes)

function setup(): Promise<CliHome> {
  return makeCliHome('cp-run-', async (stores) => {
    await stores.keys.saveKey('K', KEY_VALUE)
    await stores.keys.saveKey('OTHER', OTHER_VALUE)
  })
}

/** What a run leaves behind: session dirs and control sockets, registry entries. */
function leftovers(home: string): string[] {
  const list = (dir: string): string[] => {
    try {
      return readdirSync(dir).map((entry) => join(dir, entry))
    } catch {
      return []
    }
  }
  return [...list(join(home, 'run')), ...list(join(home, 'state', 'sessions'))]
}

/** Live processes whose command line holds marker (our own test is excluded by construction). */
function processesWith(marker: string): number[] {
  const pids: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(marker)) pids.push(Number(entry))
    } catch {
      // Gone meanwhile.
    }
  }
  return pids
}

beforeAll(() => {
  // The sandbox runs the built CLI: fail with a clear message rather than a confusing one.
  expect(() => readFileSync(fileURLToPath(new URL('../dist/bin.js', import.meta.url)))).not.toThrow()
})

describe('credproxy run --sandbox bwrap', () => {
  test('a granted key arrives through the socket; an ungranted one is NOT_GRANTED with a hint naming --grant-key', async () => {
    const { env, cwd, home } = await setup()
    const result = await runCli(['run', '--sandbox', 'bwrap', '--grant-key', 'K', '--', 'node', PROBE, 'K', 'OTHER'], { env, cwd })
    expect(result.code).toBe(0)
    expect(JSON.parse(result.stdout)).toEqual({ K: { ok: true, value: KEY_VALUE }, OTHER: { ok: false, code: 'NOT_GRANTED' } })
    expect(result.stderr).toContain('--grant-key OTHER')
    expect(result.stderr).not.toContain(OTHER_VALUE)
    expect(leftovers(home)).toEqual([])
  })

  test('`credproxy run --grant-key K -- credproxy key get K` prints the key', async () => {
    const { env, cwd } = await setup()
    const result = await runCli(['run', '--sandbox', 'bwrap', '--grant-key', 'K', '--', 'credproxy', 'key', 'get', 'K'], { env, cwd })
    expect(result.stdout.trim()).toBe(KEY_VALUE)
    expect(result.code).toBe(0)
  })

  test('without the grant `credproxy key get K` fails with NOT_GRANTED and names --grant-key K', async () => {
    const { env, cwd } = await setup()
    const result = await runCli(['run', '--sandbox', 'bwrap', '--', 'credproxy', 'key', 'get', 'K'], { env, cwd })
    expect(result.code).toBe(4)
    expect(result.stdout).not.toContain(KEY_VALUE)
    expect(result.stderr).toContain('NOT_GRANTED')
    expect(result.stderr).toContain('--grant-key K')
  })

  test('inside: only loopback, no route out, no credproxy files, a clean env; the cwd is writable', async () => {
    const { env, cwd, home } = await setup()
    const script = [
      'cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d " "',
      `node -e 'require("net").connect(9,"192.0.2.1").on("error",e=>console.log("connect:"+e.code))'`,
      `test -e ${home} && echo HOME_VISIBLE || echo home-hidden`,
      'env | sort',
      'echo written > out.txt',
    ].join('; ')
    const result = await runCli(['run', '--sandbox', 'bwrap', '--', 'sh', '-c', script], { env: { ...env, OPENAI_API_KEY: 'sk-should-not-pass' }, cwd })
    expect(result.code).toBe(0)
    const lines = result.stdout.trim().split('\n')
    expect(lines[0]).toBe('lo')
    expect(result.stdout).toContain('connect:ENETUNREACH')
    expect(result.stdout).toContain('home-hidden')
    expect(result.stdout).not.toContain('sk-should-not-pass')
    expect(result.stdout).not.toMatch(/^CREDPROXY_HOME=/m)
    expect(result.stdout).toMatch(/^CREDPROXY_SOCKET=\/run\/credproxy\/broker\.sock$/m)
    expect(readFileSync(join(cwd, 'out.txt'), 'utf8')).toBe('written\n')
  })

  test('exits with the command\'s code; SIGKILL of the command gives 137 and leaves nothing behind', async () => {
    const { env, cwd, home } = await setup()
    expect((await runCli(['run', '--sandbox', 'bwrap', '--', 'sh', '-c', 'exit 7'], { env, cwd })).code).toBe(7)
    // The background sleep's own argv carries the marker, so an orphan left inside would show up.
    const marker = `29.${process.pid}`
    const result = await runCli(['run', '--sandbox', 'bwrap', '--', 'sh', '-c', `sleep ${marker} & kill -KILL $$`], { env, cwd })
    expect(result.code).toBe(137)
    expect(leftovers(home)).toEqual([])
    expect(processesWith(`sleep\0${marker}`)).toEqual([])
  })

  test('SIGTERM to `credproxy run` reaches the command; nothing is left behind', async () => {
    const { env, cwd, home } = await setup()
    const marker = `cp-marker-${process.pid}-term`
    const child = spawn(process.execPath, [BIN, 'run', '--sandbox', 'bwrap', '--', 'sh', '-c', `trap "echo got-term; exit 42" TERM; echo ready; while :; do sleep 0.05; done # ${marker}`], {
      env,
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    await new Promise<void>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString()
        if (out.includes('ready')) resolve()
      })
    })
    child.kill('SIGTERM')
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)))
    expect(out).toContain('got-term')
    expect(code).toBe(42)
    expect(leftovers(home)).toEqual([])
    expect(processesWith(marker)).toEqual([])
  })

  test('after SIGKILL of `credproxy run` itself, the next run removes its session dir, control socket and registry entry', async () => {
    const { env, cwd, home } = await setup()
    const marker = `cp-marker-${process.pid}-kill`
    const child = spawn(process.execPath, [BIN, 'run', '--sandbox', 'bwrap', '--', 'sh', '-c', `echo ready; while :; do sleep 0.05; done # ${marker}`], {
      env,
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve()))
    const killed = new Promise<void>((resolve) => child.on('close', () => resolve()))
    child.kill('SIGKILL')
    await killed
    const stale = leftovers(home)
    expect(stale.some((path) => path.endsWith('.json'))).toBe(true)
    expect(stale.some((path) => /\/run\/[A-Za-z0-9_-]{8,64}$/.test(path))).toBe(true)
    // --die-with-parent: the sandboxed command did not outlive its credproxy.
    for (let i = 0; i < 100 && processesWith(marker).length > 0; i += 1) await new Promise((resolve) => setTimeout(resolve, 20))
    expect(processesWith(marker)).toEqual([])

    const next = await runCli(['run', '--sandbox', 'bwrap', '--', 'true'], { env, cwd })
    expect(next.code).toBe(0)
    expect(leftovers(home)).toEqual([])
  })

  test('leaves no <defunct> bwrap behind: the namespace init bwrap orphans is reaped before run returns', async () => {
    const { env, cwd } = await setup()
    // The parent is a subreaper: whatever run orphans lands there, not with a pid 1 that may reap it later.
    const parent = spawn(process.execPath, [SUBREAPER_PARENT, BIN, 'run', '--sandbox', 'bwrap', '--', 'true'], {
      env,
      cwd,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    parent.stdout.on('data', (d: Buffer) => (out += d.toString()))
    parent.stderr.on('data', (d: Buffer) => (err += d.toString()))
    const code = await new Promise<number | null>((resolve) => parent.on('close', (c) => resolve(c)))
    expect(err).toBe('')
    expect(code).toBe(0)
    expect(JSON.parse(out)).toEqual({ code: 0, zombies: [] })
  })

  test('usage errors say what is wrong and what to run', async () => {
    const { env, cwd } = await setup()
    const noDash = await runCli(['run', '--grant-key', 'K', 'ls'], { env, cwd })
    expect(noDash.code).toBe(2)
    expect(noDash.stderr).toContain('missing `--`')
    const badGrant = await runCli(['run', '--grant', 'bad name', '--', 'true'], { env, cwd })
    expect(badGrant.code).toBe(2)
    expect(badGrant.stderr).toContain("invalid --grant 'bad name'")
    expect(badGrant.stderr).not.toMatch(/at .*\.ts:\d+/)
  })
})

describe('credproxy run --sandbox none', () => {
  test('warns on stderr every time and still brokers the key', async () => {
    const { env, cwd } = await setup()
    const result = await runCli(['run', '--sandbox', 'none', '--grant-key', 'K', '--', 'node', PROBE, 'K'], { env, cwd })
    expect(result.stderr).toContain(NONE_WARNING)
    expect(JSON.parse(result.stdout)).toEqual({ K: { ok: true, value: KEY_VALUE } })
    expect(result.code).toBe(0)
  })
})
