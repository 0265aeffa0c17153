// docker/podman argv builders, engine detection and the container pid watch, without an
// engine. The same flows on real engines: run-containers.test.ts.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { describe, expect, test } from 'vitest'
import { exitCodeFor } from '../src/cli.js'
import { CredproxyError } from '../src/errors.js'
import { buildContainerArgs, CONTAINER_LABEL, CONTAINER_READY_FILE, CONTAINER_SECRET_DIR, probeEngine, watchContainerPid } from '../src/sandbox/container.js'
import { NO_SANDBOX_PID, spawnSandbox } from '../src/sandbox/launch.js'
import type { PreparedLaunch } from '../src/sandbox/select.js'
import { NONE_WARNING, parseSandboxChoice, prepareLaunch, selectSandbox } from '../src/sandbox/select.js'
import type { SandboxRequest } from '../src/sandbox/types.js'

const SECRET = 'cd'.repeat(32)

const request: SandboxRequest = {
  command: ['my-agent', '--model', 'x'],
  cwd: '/work/project',
  hostEnv: { HOME: '/home/me', TERM: 'xterm', OPENAI_API_KEY: 'sk-host-value', CREDPROXY_HOME: '/home/me/.cp' },
  socketDir: '/run/user/1000/credproxy/abc123',
  socketName: 'broker.sock',
  binds: [],
  allowNetwork: false,
  hiddenPaths: ['/home/me/.cp'],
  shimDir: '/tmp/credproxy-shim-x',
  runtimeDirs: ['/opt/credproxy'],
  nodeFiles: [],
}
const options = { secretDir: '/tmp/credproxy-secret-x', name: 'credproxy-test', tty: false, identity: { uid: 1000, gid: 1000 } }

function value(args: string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1] ?? ''] : []))
}

describe('docker and podman argv', () => {
  test('drop every capability, forbid privilege gain, map the user, and cut the network', () => {
    for (const args of [buildContainerArgs('docker', request, options), buildContainerArgs('podman', request, options)]) {
      expect(args).toEqual(expect.arrayContaining(['--cap-drop=ALL', '--security-opt', 'no-new-privileges', '--rm', '--init']))
      expect(value(args, '--user')).toEqual(['1000:1000'])
      expect(value(args, '--network')).toEqual(['none'])
      expect(args.slice(-3)).toEqual(['my-agent', '--model', 'x'])
    }
    expect(buildContainerArgs('podman', request, options)).toContain('--userns=keep-id')
    expect(buildContainerArgs('docker', request, options)).not.toContain('--userns=keep-id')
    expect(value(buildContainerArgs('docker', { ...request, allowNetwork: true }, options), '--network')).toEqual([])
  })

  test('rootful podman (uid 0) gets no --userns=keep-id, which it refuses; every container carries the label', () => {
    const root = { ...options, identity: { uid: 0, gid: 0 } }
    expect(buildContainerArgs('podman', request, root)).not.toContain('--userns=keep-id')
    expect(value(buildContainerArgs('podman', request, root), '--user')).toEqual(['0:0'])
    for (const engine of ['docker', 'podman'] as const) expect(value(buildContainerArgs(engine, request, options), '--label')).toEqual([`${CONTAINER_LABEL}=run`])
  })

  test('the prelude waits for the broker\'s ready file before it takes the secret and runs the command', () => {
    const args = buildContainerArgs('docker', request, options)
    const prelude = args[args.indexOf('-c') + 1] ?? ''
    expect(prelude.indexOf(`${CONTAINER_SECRET_DIR}`)).toBeGreaterThanOrEqual(0)
    expect(prelude.indexOf(`until [ -e "$d/${CONTAINER_READY_FILE}" ]`)).toBeLessThan(prelude.indexOf('cat "$f"'))
    expect(prelude.trimEnd().endsWith('exec "$@"')).toBe(true)
  })

  test('--egress: the proxy env and the forwarder (with or without a network), the Node forwarder run by the image\'s node', () => {
    const egress = { socketName: 'egress.sock', port: 3128, env: { HTTPS_PROXY: 'http://127.0.0.1:3128', EXAMPLE_TOKEN: 'cpxph0placeholder' }, forwarder: 'node' as const }
    for (const allowNetwork of [false, true]) {
      const args = buildContainerArgs('docker', { ...request, allowNetwork, egress }, options)
      expect(value(args, '-e')).toEqual(expect.arrayContaining(['HTTPS_PROXY=http://127.0.0.1:3128', 'EXAMPLE_TOKEN=cpxph0placeholder']))
      const init = args.indexOf('credproxy-egress-init')
      expect(init).toBeGreaterThan(0)
      expect(args.slice(init + 1)).toEqual(['my-agent', '--model', 'x'])
      const script = args[init - 1] ?? ''
      expect(script).toContain(`'node' `)
      expect(script).toContain(`'/run/credproxy/egress.sock'`)
    }
  })

  test('mount the socket directory read-only and the workdir read-write', () => {
    const args = buildContainerArgs('docker', request, options)
    const volumes = value(args, '-v')
    expect(volumes).toContain('/run/user/1000/credproxy/abc123:/run/credproxy:ro')
    expect(volumes).toContain('/work/project:/work/project:rw')
    expect(volumes).toContain(`/tmp/credproxy-secret-x:${CONTAINER_SECRET_DIR}:rw`)
    expect(value(args, '-w')).toEqual(['/work/project'])
  })

  test('host-executed files in the workdir are read-only, missing ones get empty read-only stand-ins', () => {
    const cwd = mkdtempSync(join(tmpdir(), 'cp-ctr-'))
    try {
      writeFileSync(join(cwd, '.npmrc'), 'registry=x\n')
      mkdirSync(join(cwd, '.git', 'hooks'), { recursive: true })
      const args = buildContainerArgs('docker', { ...request, cwd }, options)
      const volumes = value(args, '-v')
      expect(volumes).toEqual(
        expect.arrayContaining([
          `${cwd}/.npmrc:${cwd}/.npmrc:ro`,
          `${cwd}/.git:${cwd}/.git:rw`,
          `${cwd}/.git/hooks:${cwd}/.git/hooks:ro`,
          `/tmp/credproxy-shim-x/.empty:${cwd}/.envrc:ro`,
          `/tmp/credproxy-shim-x/.empty:${cwd}/.git/config:ro`,
        ]),
      )
      expect(value(args, '--tmpfs')).toContain(`${cwd}/.vscode:ro`)
    } finally {
      rmSync(cwd, { recursive: true, force: true })
    }
  })

  test('what `inspect` shows (argv, env) holds no secret and no host credential variable', () => {
    const args = buildContainerArgs('docker', request, options).join('\n')
    expect(args).not.toContain(SECRET)
    expect(args).not.toContain('sk-host-value')
    expect(args).not.toContain('CREDPROXY_HOME')
    const env = value(buildContainerArgs('docker', request, options), '-e')
    expect(env).toContain('CREDPROXY_SOCKET=/run/credproxy/broker.sock')
    expect(env).toContain('CREDPROXY_SECRET_FILE=/run/credproxy-secret/session-secret')
    expect(env.some((e) => e.startsWith('CREDPROXY_SECRET_FD'))).toBe(false)
  })

  test('asks for a TTY only when the host has one', () => {
    expect(buildContainerArgs('docker', request, options)).not.toContain('-t')
    expect(buildContainerArgs('docker', request, { ...options, tty: true })).toContain('-t')
  })

  test('refuse a working directory inside credproxy\'s own directory', () => {
    expect(() => buildContainerArgs('podman', { ...request, cwd: '/home/me/.cp/data' }, options)).toThrow(CredproxyError)
  })

  test('mount the install\'s package dirs, never the host node nor a dir holding the home or a credproxy dir', () => {
    const volumes = value(buildContainerArgs('docker', { ...request, nodeFiles: ['/home/me/bin/node'] }, options), '-v')
    expect(volumes).toContain('/opt/credproxy:/opt/credproxy:ro')
    expect(volumes.join(' ')).not.toContain('/home/me/bin/node')
    expect(() => buildContainerArgs('docker', { ...request, runtimeDirs: ['/home/me'] }, options)).toThrow(/contains your home directory \/home\/me/)
    expect(() => buildContainerArgs('podman', { ...request, runtimeDirs: ['/home'] }, options)).toThrow(CredproxyError)
    expect(() => buildContainerArgs('podman', { ...request, hostEnv: {}, runtimeDirs: ['/home/me'] }, options)).toThrow(/credproxy's own directory \/home\/me\/.cp/)
  })
})

describe('container cleanup', () => {
  test('removes the container through the session\'s engine env (DOCKER_HOST), not credproxy\'s own', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cp-fake-engine-'))
    try {
      // A stand-in engine CLI that records how it was called.
      writeFileSync(join(dir, 'docker'), `#!/bin/sh\necho "$DOCKER_HOST $*" >> ${dir}/calls\n`)
      chmodSync(join(dir, 'docker'), 0o755)
      const cwd = mkdtempSync(join(dir, 'cwd-'))
      const hostEnv = { PATH: `${dir}:/usr/bin:/bin`, HOME: '/nonexistent-home', DOCKER_HOST: 'unix:///private/docker.sock' }
      const prepared = await prepareLaunch('docker', { ...request, cwd, hostEnv, hiddenPaths: [] }, SECRET, false)
      await prepared.cleanup()
      expect(readFileSync(join(dir, 'calls'), 'utf8')).toBe(`unix:///private/docker.sock rm -f ${prepared.containerName ?? ''}\n`)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('engine detection and --sandbox', () => {
  test('an unreachable or missing engine gets a message naming what to install or start', () => {
    const noPath = { PATH: '/nonexistent' }
    expect(probeEngine('docker', noPath)).toMatch(/docker is not installed: install Docker Engine/)
    expect(probeEngine('podman', noPath)).toMatch(/podman is not installed: apt-get install podman/)
    // On this machine docker is a client without an engine (or absent): either way, not null.
    expect(probeEngine('docker', process.env)).toMatch(/docker/)
  })

  test('an explicit backend that cannot run is an error with exit code 6 and the reason', () => {
    const stderr = new PassThrough()
    let caught: unknown
    try {
      selectSandbox('docker', {}, stderr, () => 'docker is installed but no Docker engine is reachable: start it')
    } catch (error) {
      caught = error
    }
    expect(caught).toBeInstanceOf(CredproxyError)
    expect(exitCodeFor(caught as CredproxyError)).toBe(6)
    expect((caught as CredproxyError).message).toContain('no Docker engine is reachable')
  })

  test('auto picks the first that works and says which; none warns every time', () => {
    const stderr = new PassThrough()
    let text = ''
    stderr.on('data', (d: Buffer) => (text += d.toString()))
    const picked = selectSandbox('auto', {}, stderr, (name) => (name === 'bwrap' ? 'missing' : null))
    expect(picked).toBe('docker')
    expect(selectSandbox('none', {}, stderr)).toBe('none')
    expect(selectSandbox('none', {}, stderr)).toBe('none')
    expect(text).toContain('sandbox: docker (auto)')
    expect(text.split(NONE_WARNING).length - 1).toBe(2)
  })

  test('auto with nothing available lists every backend and never falls back to none', () => {
    expect(() => selectSandbox('auto', {}, new PassThrough(), (name) => `${name} missing`)).toThrow(/no sandbox backend works[\s\S]*docker missing/)
    expect(() => parseSandboxChoice('lxc')).toThrow(/unknown sandbox 'lxc'/)
  })
})

// No engine can run containers here, so the engine's `inspect` is replaced by a
// counting fake; everything else (the spawned process, the peer-check callback) is real.
describe('container pid for the peer check', () => {
  function fakeInspect(answers: Array<number | null>): { lookup: () => Promise<number | null>; calls: () => number } {
    let calls = 0
    return {
      lookup: () => Promise.resolve(answers[Math.min(calls++, answers.length - 1)] ?? null),
      calls: () => calls,
    }
  }

  test('polls until the container runs, then caches the pid', async () => {
    const inspect = fakeInspect([null, null, 4242])
    const watch = watchContainerPid(inspect.lookup, { tries: 10, intervalMs: 0 })
    expect(watch.current()).toBeNull()
    expect(await watch.found).toBe(4242)
    expect(watch.current()).toBe(4242)
    expect(inspect.calls()).toBe(3)
  })

  test('gives up after a bounded number of tries, and a failing lookup counts as not running', async () => {
    const inspect = fakeInspect([null])
    expect(await watchContainerPid(inspect.lookup, { tries: 4, intervalMs: 0 }).found).toBeNull()
    expect(inspect.calls()).toBe(4)
    expect(await watchContainerPid(() => Promise.reject(new Error('engine gone')), { tries: 2, intervalMs: 0 }).found).toBeNull()
  })

  function preparedContainer(): PreparedLaunch {
    return {
      // A real process stands in for `docker run`: it lives until terminated.
      plan: { backend: 'docker', file: process.execPath, args: ['-e', 'setInterval(() => {}, 1000)'], env: {}, fds: [] },
      detached: true,
      engine: 'docker',
      containerName: 'credproxy-test',
      cleanup: () => Promise.resolve(),
    }
  }
  const io = () => ({ stdin: new PassThrough(), stdout: new PassThrough(), stderr: new PassThrough(), env: {}, cwd: process.cwd() })

  test('sandboxPids() only reads the cached pid: it never runs inspect on the accept path', async () => {
    let answer: (pid: number | null) => void = () => undefined
    let calls = 0
    const lookup = (): Promise<number | null> => {
      calls++
      return new Promise((resolvePid) => (answer = resolvePid))
    }
    const sandbox = spawnSandbox(preparedContainer(), io(), { containerPidLookup: lookup, containerPidPoll: { tries: 1 } })
    try {
      expect(calls).toBe(1)
      for (let i = 0; i < 50; i++) expect(sandbox.sandboxPids()).toEqual([NO_SANDBOX_PID])
      expect(calls).toBe(1)
      answer(31337)
      expect(await sandbox.containerPid).toBe(31337)
      for (let i = 0; i < 50; i++) expect(sandbox.sandboxPids()).toEqual([31337])
      expect(calls).toBe(1)
    } finally {
      await sandbox.terminate()
    }
  })

  test('polling stops when the sandbox exits before the container ever ran', async () => {
    const inspect = fakeInspect([null])
    const sandbox = spawnSandbox(preparedContainer(), io(), {
      containerPidLookup: inspect.lookup,
      containerPidPoll: { tries: Number.MAX_SAFE_INTEGER, intervalMs: 1 },
    })
    await sandbox.terminate()
    expect(await sandbox.containerPid).toBeNull()
    expect(sandbox.sandboxPids()).toEqual([NO_SANDBOX_PID])
  })
})
