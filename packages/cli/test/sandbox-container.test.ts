// docker/podman argv builders and engine detection. No engine can run containers
// on the test machine, so these check the argv and the "no engine" message only.
import { PassThrough } from 'node:stream'
import { describe, expect, test } from 'vitest'
import { CliError } from '../src/cli-io.js'
import { CONTAINER_SECRET_DIR, probeEngine } from '../src/sandbox/container.js'
import { buildDockerArgs } from '../src/sandbox/docker.js'
import { buildPodmanArgs } from '../src/sandbox/podman.js'
import { NONE_WARNING, parseSandboxChoice, selectSandbox } from '../src/sandbox/select.js'
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
}
const options = { secretDir: '/tmp/credproxy-secret-x', name: 'credproxy-test', tty: false, identity: { uid: 1000, gid: 1000 } }

function value(args: string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1] ?? ''] : []))
}

describe('docker and podman argv', () => {
  test('drop every capability, forbid privilege gain, map the user, and cut the network', () => {
    for (const args of [buildDockerArgs(request, options), buildPodmanArgs(request, options)]) {
      expect(args).toEqual(expect.arrayContaining(['--cap-drop=ALL', '--security-opt', 'no-new-privileges', '--rm', '--init']))
      expect(value(args, '--user')).toEqual(['1000:1000'])
      expect(value(args, '--network')).toEqual(['none'])
      expect(args.slice(-3)).toEqual(['my-agent', '--model', 'x'])
    }
    expect(buildPodmanArgs(request, options)).toContain('--userns=keep-id')
    expect(buildDockerArgs(request, options)).not.toContain('--userns=keep-id')
    expect(value(buildDockerArgs({ ...request, allowNetwork: true }, options), '--network')).toEqual([])
  })

  test('mount the socket directory read-only and the workdir read-write', () => {
    const args = buildDockerArgs(request, options)
    const volumes = value(args, '-v')
    expect(volumes).toContain('/run/user/1000/credproxy/abc123:/run/credproxy:ro')
    expect(volumes).toContain('/work/project:/work/project:rw')
    expect(volumes).toContain(`/tmp/credproxy-secret-x:${CONTAINER_SECRET_DIR}:rw`)
    expect(value(args, '-w')).toEqual(['/work/project'])
  })

  test('what `inspect` shows (argv, env) holds no secret and no host credential variable', () => {
    const args = buildDockerArgs(request, options).join('\n')
    expect(args).not.toContain(SECRET)
    expect(args).not.toContain('sk-host-value')
    expect(args).not.toContain('CREDPROXY_HOME')
    const env = value(buildDockerArgs(request, options), '-e')
    expect(env).toContain('CREDPROXY_SOCKET=/run/credproxy/broker.sock')
    expect(env).toContain('CREDPROXY_SECRET_FD=3')
  })

  test('asks for a TTY only when the host has one', () => {
    expect(buildDockerArgs(request, options)).not.toContain('-t')
    expect(buildDockerArgs(request, { ...options, tty: true })).toContain('-t')
  })

  test('refuse a working directory inside credproxy\'s own directory', () => {
    expect(() => buildPodmanArgs({ ...request, cwd: '/home/me/.cp/data' }, options)).toThrow(CliError)
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
    expect(caught).toBeInstanceOf(CliError)
    expect((caught as CliError).exitCode).toBe(6)
    expect((caught as CliError).message).toContain('no Docker engine is reachable')
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
