// `credproxy run --egress RULE` in real bubblewrap without a network: real clients
// inside reach a local HTTPS upstream through the forwarder and the session's egress
// proxy, holding only the placeholder; the host injects the real secret.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { auditLogPath } from '../src/audit/audit-format.js'
import { descendants, isAlive } from '../src/sandbox/process-tree.js'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { makeCliHome, removeCliHomes, runCli, type CliHome } from './helpers/cli-runner.js'
import { startTestUpstream, type TestUpstream } from './helpers/egress-test-upstream.js'
import { resolvePaths } from '../src/paths.js'

const SECRET = 'egress-run-real-secret-0123456789'
const BIN = fileURLToPath(new URL('../bin/credproxy.js', import.meta.url))
const exec = promisify(execFile)
const cleanups: Array<() => Promise<unknown>> = []
let upstream: TestUpstream
let scratch: CliHome

beforeAll(async () => {
  scratch = await makeCliHome('cp-egress-run-up-')
  upstream = await startTestUpstream(scratch.home, (req, res) => {
    res.setHeader('content-type', 'text/plain')
    res.end(`hello ${req.url ?? ''}`)
  }, { names: ['api.example.test', 'other.example.test'] })
})
afterAll(async () => {
  await upstream.close()
  removeCliHomes()
})
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
  upstream.received.length = 0
})

/** A home with the key stored and an egress.json rule pinned to the local upstream. */
async function egressHome(): Promise<CliHome> {
  const home = await makeCliHome('cp-egress-run-', (stores) => stores.keys.saveKey('EXAMPLE_KEY', SECRET))
  const paths = resolvePaths(home.env)
  await mkdir(paths.configDir, { recursive: true })
  await writeFile(
    join(paths.configDir, 'egress.json'),
    JSON.stringify({
      rules: [
        {
          name: 'example',
          hosts: ['api.example.test'],
          credential: { key: 'EXAMPLE_KEY' },
          inject: { header: 'authorization', format: 'Bearer {}' },
          route: '/example',
          upstream: `127.0.0.1:${upstream.port}`,
          ca: upstream.caFile,
          env: ['EXAMPLE_TOKEN'],
          baseUrlEnv: 'EXAMPLE_BASE_URL',
        },
      ],
    }),
  )
  return home
}

describe('credproxy run --egress in bubblewrap', () => {
  test('curl inside reaches the rule host through the bridge; the upstream gets the real secret, the sandbox only the placeholder', async () => {
    const home = await egressHome()
    const script = [
      'curl -sS --max-time 20 -H "authorization: Bearer $EXAMPLE_TOKEN" https://api.example.test/with-placeholder',
      'echo',
      'curl -sS --max-time 20 https://api.example.test/no-credential',
      'echo',
      'curl -sS --max-time 20 "$EXAMPLE_BASE_URL/route"',
      'echo',
      'echo "token=$EXAMPLE_TOKEN"',
    ].join('; ')
    const result = await runCli(['run', '--sandbox', 'bwrap', '--egress', 'example', '--', 'sh', '-c', script], { env: home.env, cwd: home.cwd })
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    const lines = result.stdout.split('\n')
    expect(lines.slice(0, 3)).toEqual(['hello /with-placeholder', 'hello /no-credential', 'hello /route'])
    expect(lines[3]).toMatch(/^token=cpxph0[A-Za-z0-9]{22,}$/)
    expect(result.stdout).not.toContain(SECRET)
    expect(upstream.received.map((r) => [r.url, r.headers.authorization])).toEqual([
      ['/with-placeholder', `Bearer ${SECRET}`],
      ['/no-credential', `Bearer ${SECRET}`],
      ['/route', `Bearer ${SECRET}`],
    ])
  })

  /** credproxy run as a child process, its command printing `started` and sleeping. */
  async function startSleeping(home: CliHome): Promise<{ child: ChildProcess; tree: number[]; exited: Promise<number | null> }> {
    const child = spawn(process.execPath, [BIN, 'run', '--sandbox', 'bwrap', '--egress', 'example', '--', 'sh', '-c', 'echo started; exec sleep 600'], {
      env: home.env,
      cwd: home.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal === null ? null : 128 + 9))))
    await new Promise<void>((resolve, reject) => {
      let out = ''
      child.stdout?.on('data', (chunk: Buffer) => {
        out += chunk.toString()
        if (out.includes('started')) resolve()
      })
      void exited.then(() => reject(new Error(`credproxy exited before the command started: ${out}`)))
    })
    const tree = descendants(child.pid ?? 0)
    return { child, tree, exited }
  }

  const comm = (pid: number): string => {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim()
    } catch {
      return ''
    }
  }

  async function allGone(pids: readonly number[]): Promise<number[]> {
    for (let i = 0; i < 100; i += 1) {
      if (pids.every((pid) => !isAlive(pid))) return []
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    return pids.filter((pid) => isAlive(pid))
  }

  test('SIGKILL of credproxy takes the whole sandbox down, the forwarder included', async () => {
    const home = await egressHome()
    const { child, tree } = await startSleeping(home)
    expect(tree.map(comm)).toContain('socat')
    child.kill('SIGKILL')
    expect(await allGone(tree)).toEqual([])
  }, 30_000)

  test('SIGKILL of the command ends the run (137) and leaves no forwarder behind', async () => {
    const home = await egressHome()
    const { child, exited } = await startSleeping(home)
    let tree: number[] = []
    let sleeper: number | undefined
    // `started` comes just before the exec: wait for the sleep itself.
    for (let i = 0; i < 100 && sleeper === undefined; i += 1) {
      tree = descendants(child.pid ?? 0)
      sleeper = tree.find((pid) => comm(pid) === 'sleep')
      if (sleeper === undefined) await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(sleeper).toBeDefined()
    process.kill(sleeper ?? 0, 'SIGKILL')
    expect(await exited).toBe(137)
    expect(await allGone(tree)).toEqual([])
  }, 30_000)

  test('a host process cannot use the session egress socket: the peer check refuses it before any request', async () => {
    const home = await egressHome()
    const { child, exited } = await startSleeping(home)
    try {
      const runtimeDir = resolvePaths(home.env).runtimeDir
      const sessions = (await readdir(runtimeDir, { withFileTypes: true })).filter((entry) => entry.isDirectory())
      const socket = sessions.map((entry) => join(runtimeDir, entry.name, 'egress.sock')).find((path) => {
        try {
          readFileSync(path)
          return false
        } catch (error) {
          return (error as NodeJS.ErrnoException).code !== 'ENOENT'
        }
      })
      expect(socket).toBeDefined()
      const before = upstream.received.length
      const result = await exec('curl', ['-sS', '--max-time', '10', '--unix-socket', socket ?? '', 'http://localhost/example/from-host']).catch((error: { code: number }) => error)
      // Refused at accept: curl sees a reset (56), an empty reply (52) or a failed connect (7), never an answer.
      expect([7, 52, 56]).toContain((result as { code?: number }).code)
      expect(upstream.received.length).toBe(before)
    } finally {
      child.kill('SIGTERM')
      await exited
    }
    // Read once credproxy closed its audit log.
    const audit = await readFile(auditLogPath(resolvePaths(home.env)), 'utf8')
    expect(audit).toContain('"reason":"peer-outside-sandbox"')
  }, 30_000)

  test('sessions shows the egress rules; revoke --egress stops injection on the next request, grant --egress brings it back', async () => {
    const home = await egressHome()
    const step = (n: number): string => `curl -s -o /dev/null -w "step${n} %{http_code}%{http_connect}\\n" --max-time 20 https://api.example.test/step${n}; while [ ! -f go${n} ]; do sleep 0.05; done`
    const script = `${step(1)}; ${step(2)}; curl -s -o /dev/null -w "step3 %{http_code}\\n" --max-time 20 https://api.example.test/step3`
    let out = ''
    const waiters: Array<{ text: string; resolve: () => void }> = []
    const child = spawn(process.execPath, [BIN, 'run', '--sandbox', 'bwrap', '--egress', 'example', '--', 'sh', '-c', script], { env: home.env, cwd: home.cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      for (const waiter of waiters) if (out.includes(waiter.text)) waiter.resolve()
    })
    const seen = (text: string): Promise<void> => new Promise((resolve) => (out.includes(text) ? resolve() : waiters.push({ text, resolve })))
    await seen('step1 ')
    const listed = await runCli(['sessions', '--json'], { env: home.env })
    const [view] = JSON.parse(listed.stdout) as Array<{ id: string; grants: { egress?: string[] } }>
    expect(view?.grants.egress).toEqual(['example'])
    const id = view?.id ?? ''
    expect((await runCli(['sessions'], { env: home.env })).stdout).toContain('egress:       example')
    const revoked = await runCli(['revoke', '--session', id, '--egress', 'example'], { env: home.env })
    expect(revoked.code).toBe(0)
    await writeFile(join(home.cwd, 'go1'), '')
    await seen('step2 ')
    expect((await runCli(['grant', '--session', id, '--egress', 'example'], { env: home.env })).code).toBe(0)
    await writeFile(join(home.cwd, 'go2'), '')
    expect(await exited).toBe(0)
    // Granted: 200 through the tunnel; revoked: the CONNECT itself is refused (403).
    expect(out).toContain('step1 200200')
    expect(out).toContain('step2 000403')
    expect(out).toContain('step3 200')
    expect(upstream.received.map((r) => r.url)).toEqual(['/step1', '/step3'])
  }, 30_000)

  test('--allow-network keeps the proxy env (a token-guarded loopback listener on the host, no forwarder): injection still works', async () => {
    const home = await egressHome()
    const script = 'curl -sS --max-time 20 https://api.example.test/net; echo; echo "proxy=$HTTPS_PROXY"; pgrep -x socat >/dev/null && echo forwarder-running || echo no-forwarder'
    const result = await runCli(['run', '--sandbox', 'bwrap', '--allow-network', '--egress', 'example', '--', 'sh', '-c', script], { env: home.env, cwd: home.cwd })
    expect(result.code).toBe(0)
    expect(result.stdout).toMatch(/^hello \/net\nproxy=http:\/\/credproxy:[0-9a-f]{48}@127\.0\.0\.1:\d+\nno-forwarder\n$/)
    expect(upstream.received.map((r) => [r.url, r.headers.authorization])).toEqual([['/net', `Bearer ${SECRET}`]])
  }, 30_000)

  test('--sandbox none --egress: the host environment plus the proxy variables, through the token-guarded listener', async () => {
    const home = await egressHome()
    const script = 'curl -sS --max-time 20 -H "authorization: Bearer $EXAMPLE_TOKEN" https://api.example.test/none; echo; echo "$NODE_OPTIONS"'
    const result = await runCli(['run', '--sandbox', 'none', '--egress', 'example', '--', 'sh', '-c', script], { env: { ...home.env, NODE_OPTIONS: '--max-old-space-size=512' }, cwd: home.cwd })
    expect(result.code).toBe(0)
    const [body, nodeOptions] = result.stdout.split('\n')
    expect(body).toBe('hello /none')
    // The user's own NODE_OPTIONS stay, after the preload.
    expect(nodeOptions).toMatch(/^--import \S+node-proxy-preload\.mjs --max-old-space-size=512$/)
    expect(upstream.received.map((r) => r.headers.authorization)).toEqual([`Bearer ${SECRET}`])
  }, 30_000)

  test('without socat the Node forwarder shipped in the package bridges the same way', async () => {
    const home = await egressHome()
    const script = 'curl -sS --max-time 20 https://api.example.test/node-forwarder; echo; pgrep -x socat >/dev/null && echo socat || echo no-socat'
    const result = await runCli(['run', '--sandbox', 'bwrap', '--egress', 'example', '--', 'sh', '-c', script], { env: { ...home.env, CREDPROXY_EGRESS_FORWARDER: 'node' }, cwd: home.cwd })
    expect(result.stderr).toBe('')
    expect(result.stdout).toBe('hello /node-forwarder\nno-socat\n')
    expect(upstream.received.map((r) => r.headers.authorization)).toEqual([`Bearer ${SECRET}`])
  }, 30_000)
})
