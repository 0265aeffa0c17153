// `credproxy run --sandbox docker|podman` end to end on real engines: a private dockerd
// and a private podman setup (scripts/container-engines.sh), an image imported from a
// root filesystem this file assembles (scripts/container-test-rootfs.sh; no registry).
// An engine that cannot start fails these tests (beforeAll throws): never a silent skip.
import { randomBytes } from 'node:crypto'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { CONTAINER_LABEL, type Engine } from '../src/sandbox/container.js'
import { descendants } from '../src/sandbox/process-tree.js'
import { CA_BUNDLE_VARS } from '../src/session/session-egress.js'
import { resolvePaths } from '../src/paths.js'
import { makeCliHome, removeCliHomes, runCli, startCli, type CliHome } from './helpers/cli-runner.js'
import { startTestUpstream, type TestUpstream } from './helpers/egress-test-upstream.js'

const exec = promisify(execFile)
const SCRIPTS = fileURLToPath(new URL('../../../scripts/', import.meta.url))
const BIN = fileURLToPath(new URL('../bin/credproxy.js', import.meta.url))
const IMAGE = 'localhost/credproxy-test-rootfs:latest'
// Random per run: the scans inside would otherwise find the literal in this very file when the checkout lies
// under a directory they read (a clone in /tmp is bound at its own path as the working directory).
const KEY = `container-real-key-${randomBytes(16).toString('hex')}`
const EGRESS_SECRET = `container-egress-secret-${randomBytes(16).toString('hex')}`
const ENGINES: Engine[] = ['docker', 'podman']

let scratch: string
let engineEnv: Record<string, string> = {}
let upstream: TestUpstream

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'cp-engines-'))
  const { stdout } = await exec('bash', [join(SCRIPTS, 'container-engines.sh'), 'start', join(scratch, 'engines')], { timeout: 60_000 }).catch(
    (error: { stderr?: string; message: string }) => {
      throw new Error(`the container engines did not start (apt-get install docker.io podman runc catatonit tini): ${error.stderr ?? error.message}`)
    },
  )
  engineEnv = Object.fromEntries(stdout.trim().split('\n').map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]))
  const tar = join(scratch, 'rootfs.tar')
  await exec('bash', [join(SCRIPTS, 'container-test-rootfs.sh'), tar], { timeout: 60_000 })
  for (const engine of ENGINES) await exec(engine, ['import', tar, IMAGE], { env: { ...process.env, ...engineEnv }, timeout: 120_000 })
  await rm(tar)
  upstream = await startTestUpstream(scratch, (req, res) => res.end(`hello ${req.url ?? ''}`), { names: ['api.example.test'] })
}, 240_000)

afterAll(async () => {
  await upstream?.close()
  removeCliHomes()
  if (scratch !== undefined) {
    await exec('bash', [join(SCRIPTS, 'container-engines.sh'), 'stop', join(scratch, 'engines')], { timeout: 60_000 })
    await rm(scratch, { recursive: true, force: true })
  }
}, 90_000)

afterEach(() => {
  upstream.received.length = 0
})

async function engineCli(engine: Engine, args: string[]): Promise<string> {
  const { stdout } = await exec(engine, args, { env: { ...process.env, ...engineEnv }, timeout: 30_000 })
  return stdout
}

/** Our containers, running or not: what every exit path must leave empty. */
const ours = async (engine: Engine): Promise<string> => (await engineCli(engine, ['ps', '-a', '-q', '--filter', `label=${CONTAINER_LABEL}`])).trim()

async function home(): Promise<CliHome> {
  const made = await makeCliHome('cp-ctr-', (stores) => stores.keys.saveKey('EXAMPLE_KEY', KEY))
  return { ...made, env: { ...made.env, ...engineEnv } }
}

/** A home whose egress.json pins rule `example` to the local upstream. */
async function egressHome(): Promise<CliHome> {
  const made = await makeCliHome('cp-ctr-egress-', (stores) => stores.keys.saveKey('EXAMPLE_EGRESS', EGRESS_SECRET))
  const paths = resolvePaths(made.env)
  await mkdir(paths.configDir, { recursive: true })
  const rule = {
    name: 'example',
    hosts: ['api.example.test'],
    credential: { key: 'EXAMPLE_EGRESS' },
    inject: { header: 'authorization', format: 'Bearer {}' },
    route: '/example',
    upstream: `127.0.0.1:${upstream.port}`,
    ca: upstream.caFile,
    env: ['EXAMPLE_TOKEN'],
    baseUrlEnv: 'EXAMPLE_BASE_URL',
  }
  await writeFile(join(paths.configDir, 'egress.json'), JSON.stringify({ rules: [rule] }))
  return { ...made, env: { ...made.env, ...engineEnv } }
}

function lineValue(stdout: string, name: string): string | undefined {
  return stdout
    .split('\n')
    .find((line) => line.startsWith(`${name}=`))
    ?.slice(name.length + 1)
}

/** Waits until every line of `marks` appeared on stdout of an in-process run. */
function watchStdout(): { onStdout: (all: string) => void; seen: (text: string) => Promise<void> } {
  let out = ''
  const waiters: Array<{ text: string; resolve: () => void }> = []
  return {
    onStdout: (all) => {
      out = all
      for (const waiter of waiters) if (out.includes(waiter.text)) waiter.resolve()
    },
    seen: (text) => new Promise((resolve) => (out.includes(text) ? resolve() : waiters.push({ text, resolve }))),
  }
}

describe.each(ENGINES)('credproxy run --sandbox %s', (engine) => {
  test('grants, the secret hand-off, the read-only broker socket, no network; inspect, env and files never hold the secret', async () => {
    const h = await home()
    const script = [
      'echo "key=$(credproxy key get EXAMPLE_KEY)"',
      'credproxy key get OTHER_KEY; echo "other=$?"',
      'echo "secretfile=$(stat -c %a "$CREDPROXY_SECRET_FILE") $(cat "$CREDPROXY_SECRET_FILE" | grep -c .)"',
      'echo "handoff=[$(ls -A /run/credproxy-secret-in)]"',
      'touch /run/credproxy/new 2>/dev/null; echo "touch=$?"',
      'rm -f "$CREDPROXY_SOCKET" 2>/dev/null; echo "rmsocket=$?"',
      'echo "nets=$(ls /sys/class/net)"',
      // Every writable place, the cwd, and every process's env and argv: only the secret file itself holds the secret.
      'echo "holders=$(grep -rlsF -f "$CREDPROXY_SECRET_FILE" /tmp /run "$PWD" /proc/[0-9]*/environ /proc/[0-9]*/cmdline | tr "\\n" " ")"',
      'echo "keyholders=$(grep -rlsF "$(credproxy key get EXAMPLE_KEY)" /tmp /run "$PWD" /proc/[0-9]*/environ | tr "\\n" " ")"',
      'echo "secret=$(cat "$CREDPROXY_SECRET_FILE")"',
      'echo ready',
      'while [ ! -f go ]; do sleep 0.05; done',
    ].join('\n')
    const watch = watchStdout()
    const running = startCli(['run', '--sandbox', engine, '--image', IMAGE, '--grant-key', 'EXAMPLE_KEY', '--', '/bin/sh', '-c', script], {
      env: h.env,
      cwd: h.cwd,
      onStdout: watch.onStdout,
    })
    await watch.seen('ready')
    const [id] = (await ours(engine)).split('\n')
    expect(id).toMatch(/^[0-9a-f]+$/)
    const inspect = await engineCli(engine, ['inspect', id ?? ''])
    // What the sandbox itself read from its secret file (printed for this check only).
    const secret = lineValue(running.stdout(), 'secret') ?? ''
    expect(secret).toMatch(/^[0-9a-f]{64}$/)
    expect(inspect).not.toContain(secret)
    expect(inspect).not.toContain(KEY)
    expect(inspect).toContain('CREDPROXY_SECRET_FILE=/run/credproxy-secret/session-secret')
    await writeFile(join(h.cwd, 'go'), '')
    const code = await running.exit
    const out = running.stdout()
    expect(running.stderr()).toContain('NOT_GRANTED')
    expect(code).toBe(0)
    expect(lineValue(out, 'key')).toBe(KEY)
    expect(lineValue(out, 'other')).toBe('4')
    expect(lineValue(out, 'secretfile')).toBe('400 1')
    expect(lineValue(out, 'handoff')).toBe('[]')
    expect(lineValue(out, 'touch')).not.toBe('0')
    expect(lineValue(out, 'rmsocket')).not.toBe('0')
    expect(lineValue(out, 'nets')).toBe('lo')
    expect(lineValue(out, 'holders')?.trim()).toBe('/run/credproxy-secret/session-secret')
    expect(lineValue(out, 'keyholders')?.trim()).toBe('')
    expect(await ours(engine)).toBe('')
  }, 60_000)

  test('the command\'s exit code is passed through and the container is gone', async () => {
    const h = await home()
    const result = await runCli(['run', '--sandbox', engine, '--image', IMAGE, '--', '/bin/sh', '-c', 'exit 7'], { env: h.env, cwd: h.cwd })
    expect(result.code).toBe(7)
    expect(await ours(engine)).toBe('')
  }, 60_000)

  /** credproxy run as a child process whose command prints `started` then sleeps. */
  async function startSleeping(h: CliHome): Promise<{ child: ChildProcess; exited: Promise<number | null> }> {
    const child = spawn(process.execPath, [BIN, 'run', '--sandbox', engine, '--image', IMAGE, '--', '/bin/sh', '-c', 'echo started; exec sleep 600'], {
      env: h.env,
      cwd: h.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal === null ? null : -1))))
    await new Promise<void>((resolve, reject) => {
      let out = ''
      child.stdout?.on('data', (chunk: Buffer) => {
        out += chunk.toString()
        if (out.includes('started')) resolve()
      })
      void exited.then(() => reject(new Error(`credproxy exited before the command started: ${out}`)))
    })
    return { child, exited }
  }

  test('SIGKILL of the command inside: credproxy exits 137 and removes the container', async () => {
    const h = await home()
    const { exited } = await startSleeping(h)
    const [id] = (await ours(engine)).split('\n')
    const init = Number((await engineCli(engine, ['inspect', '--format', '{{.State.Pid}}', id ?? ''])).trim())
    let sleeper: number | undefined
    for (let i = 0; i < 100 && sleeper === undefined; i += 1) {
      sleeper = descendants(init).find((pid) => readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep')
      if (sleeper === undefined) await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(sleeper).toBeDefined()
    process.kill(sleeper ?? 0, 'SIGKILL')
    expect(await exited).toBe(137)
    expect(await ours(engine)).toBe('')
  }, 60_000)

  test('SIGTERM of credproxy reaches the command (143) and removes the container', async () => {
    const h = await home()
    const { child, exited } = await startSleeping(h)
    expect(await ours(engine)).not.toBe('')
    child.kill('SIGTERM')
    expect(await exited).toBe(143)
    expect(await ours(engine)).toBe('')
  }, 60_000)

  test('--egress: curl inside reaches the upstream through the forwarder holding only the placeholder; the CA bundle is read-only', async () => {
    const h = await egressHome()
    const script = [
      'curl -sS --max-time 20 -H "authorization: Bearer $EXAMPLE_TOKEN" https://api.example.test/with-placeholder; echo',
      'curl -sS --max-time 20 "$EXAMPLE_BASE_URL/route"; echo',
      'node -e "fetch(\'https://api.example.test/node\').then(r => r.text()).then(t => console.log(t))"',
      'echo "forwarder=$(cat /proc/[0-9]*/comm 2>/dev/null | grep -x -m1 socat)"',
      'echo "writebundle=$( (echo x >> "$CURL_CA_BUNDLE") 2>/dev/null; echo $?)"',
      // The pattern file sits in the cwd, which is why the cwd itself is not scanned here.
      'echo "holders=$(grep -rlsF -f "$PWD/.probe/pattern" --exclude-dir=.probe /tmp /run /proc/[0-9]*/environ /proc/[0-9]*/cmdline | tr "\\n" " ")"',
      'env | grep -E "^(HTTPS?_PROXY|https?_proxy|NO_PROXY|no_proxy|NODE_OPTIONS|NODE_EXTRA_CA_CERTS|EXAMPLE_[A-Z_]+|[A-Z_]+_CA_BUNDLE|SSL_CERT_FILE|GIT_SSL_CAINFO|PIP_CERT|DENO_CERT)=" | sort | sed "s/^/env:/"',
    ].join('\n')
    await mkdir(join(h.cwd, '.probe'))
    await writeFile(join(h.cwd, '.probe', 'pattern'), `${EGRESS_SECRET}\n`)
    const result = await runCli(['run', '--sandbox', engine, '--image', IMAGE, '--egress', 'example', '--', '/bin/sh', '-c', script], {
      env: h.env,
      cwd: h.cwd,
    })
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    const lines = result.stdout.split('\n')
    expect(lines.slice(0, 3)).toEqual(['hello /with-placeholder', 'hello /route', 'hello /node'])
    expect(lineValue(result.stdout, 'forwarder')).toBe('socat')
    expect(lineValue(result.stdout, 'writebundle')).not.toBe('0')
    expect(result.stdout).not.toContain(EGRESS_SECRET)
    expect(lineValue(result.stdout, 'holders')?.trim()).toBe('')
    expect(upstream.received.map((r) => [r.url, r.headers.authorization])).toEqual([
      ['/with-placeholder', `Bearer ${EGRESS_SECRET}`],
      ['/route', `Bearer ${EGRESS_SECRET}`],
      ['/node', `Bearer ${EGRESS_SECRET}`],
    ])
    // The same egress env as bubblewrap gets, the placeholder aside (one per session).
    const containerEnv = lines.filter((line) => line.startsWith('env:')).map((line) => line.slice(4))
    const bwrap = await runCli(['run', '--sandbox', 'bwrap', '--egress', 'example', '--', '/bin/sh', '-c', script.split('\n').at(-1) ?? ''], { env: h.env, cwd: h.cwd })
    expect(bwrap.code).toBe(0)
    const bwrapEnv = bwrap.stdout.split('\n').filter((line) => line.startsWith('env:')).map((line) => line.slice(4))
    const stable = (env: string[]): string[] => env.map((line) => line.replace(/^EXAMPLE_TOKEN=cpxph0[A-Za-z0-9]+$/, 'EXAMPLE_TOKEN=<placeholder>'))
    expect(stable(containerEnv)).toEqual(stable(bwrapEnv))
    expect(stable(containerEnv)).toContain('EXAMPLE_TOKEN=<placeholder>')
    expect(containerEnv).toContain('HTTPS_PROXY=http://127.0.0.1:3128')
    for (const name of CA_BUNDLE_VARS) expect(containerEnv).toContain(`${name}=/run/credproxy/egress-ca-bundle.pem`)
    expect(await ours(engine)).toBe('')
  }, 90_000)

  test('--egress with the Node forwarder (no socat): the image\'s node runs it from the mounted package', async () => {
    const h = await egressHome()
    const script = 'curl -sS --max-time 20 https://api.example.test/node-forwarder; echo; echo "socat=$(cat /proc/[0-9]*/comm 2>/dev/null | grep -c -x socat)"'
    const result = await runCli(['run', '--sandbox', engine, '--image', IMAGE, '--egress', 'example', '--', '/bin/sh', '-c', script], {
      env: { ...h.env, CREDPROXY_EGRESS_FORWARDER: 'node' },
      cwd: h.cwd,
    })
    expect(result.stderr).toBe('')
    expect(result.stdout).toBe('hello /node-forwarder\nsocat=0\n')
    expect(upstream.received.map((r) => r.headers.authorization)).toEqual([`Bearer ${EGRESS_SECRET}`])
  }, 60_000)

  test('--allow-network --egress: the container still gets the forwarder and the proxy env (the host loopback listener is out of its reach)', async () => {
    const h = await egressHome()
    const script = 'curl -sS --max-time 20 https://api.example.test/net; echo; echo "proxy=$HTTPS_PROXY"; echo "forwarder=$(cat /proc/[0-9]*/comm 2>/dev/null | grep -x -m1 socat)"'
    const result = await runCli(['run', '--sandbox', engine, '--image', IMAGE, '--allow-network', '--egress', 'example', '--', '/bin/sh', '-c', script], { env: h.env, cwd: h.cwd })
    expect(result.stderr).toBe('')
    expect(result.stdout).toBe('hello /net\nproxy=http://127.0.0.1:3128\nforwarder=socat\n')
    expect(upstream.received.map((r) => r.headers.authorization)).toEqual([`Bearer ${EGRESS_SECRET}`])
    expect(await ours(engine)).toBe('')
  }, 60_000)
})

