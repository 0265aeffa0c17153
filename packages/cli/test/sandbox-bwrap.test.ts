// The bwrap argv builder, the sandbox env allowlist and the keyring seccomp filter,
// the last one checked in a real bubblewrap sandbox.
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { afterEach, describe, expect, test } from 'vitest'
import { CredproxyError } from '../src/errors.js'
import { buildBwrapArgs, bwrapLaunchPlan, isWithin, probeBwrap } from '../src/sandbox/bwrap.js'
import { buildSandboxEnv } from '../src/sandbox/sandbox-env.js'
import { buildKeyringSeccompFilter } from '../src/sandbox/seccomp.js'
import type { SandboxRequest } from '../src/sandbox/types.js'

const dirs: string[] = []
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'cp-bwrap-'))
  dirs.push(dir)
  return dir
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

function request(overrides: Partial<SandboxRequest> = {}): SandboxRequest {
  const base = tempDir()
  mkdirSync(join(base, 'cp-home'))
  return {
    command: ['true'],
    cwd: join(base, 'project'),
    hostEnv: { HOME: join(base, 'home'), PATH: '/usr/bin:/bin', TERM: 'xterm' },
    socketDir: join(base, 'run', 'session'),
    socketName: 'broker.sock',
    binds: [],
    allowNetwork: false,
    hiddenPaths: [join(base, 'cp-home')],
    shimDir: join(base, 'shim'),
    runtimeDirs: [],
    nodeFiles: [],
    ...overrides,
  }
}

function pairs(args: string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1] ?? ''] : []))
}

describe('buildBwrapArgs', () => {
  test('unshares everything, no network by default, and --allow-network keeps it', () => {
    const off = buildBwrapArgs(request()).args
    expect(off.slice(0, 1)).toEqual(['--unshare-all'])
    expect(off).not.toContain('--share-net')
    expect(off).toEqual(expect.arrayContaining(['--die-with-parent', '--new-session']))
    expect(buildBwrapArgs(request({ allowNetwork: true })).args).toContain('--share-net')
  })

  test('hides the host home, /tmp and /run, binds the cwd read-write and the socket dir read-only', () => {
    const r = request()
    const { args } = buildBwrapArgs(r)
    expect(pairs(args, '--tmpfs')).toEqual(expect.arrayContaining([r.hostEnv['HOME'], '/tmp', '/run']))
    expect(pairs(args, '--bind')).toContain(r.cwd)
    expect(args.join(' ')).toContain(`--ro-bind ${r.socketDir} /run/credproxy`)
    expect(args.join(' ')).toContain(`--chdir ${r.cwd}`)
    expect(args.slice(args.indexOf('--') + 1)).toEqual(['true'])
  })

  test('refuses a working directory or --bind that is or contains the home or a credproxy dir', () => {
    const base = tempDir()
    const home = join(base, 'home')
    const data = join(home, '.local', 'share', 'credproxy')
    mkdirSync(data, { recursive: true })
    const r = request({ hostEnv: { HOME: home }, hiddenPaths: [data] })
    expect(() => buildBwrapArgs({ ...r, cwd: home })).toThrow(/contains credproxy's own directory/)
    expect(() => buildBwrapArgs({ ...r, hiddenPaths: [], cwd: home })).toThrow(`is or contains your home directory ${home}`)
    expect(() => buildBwrapArgs({ ...r, hiddenPaths: [], cwd: base })).toThrow(/your home directory/)
    expect(() => buildBwrapArgs({ ...r, binds: [join(home, '.local')] })).toThrow(CredproxyError)
    // A project below the home is fine.
    mkdirSync(join(home, 'src'))
    expect(pairs(buildBwrapArgs({ ...r, cwd: join(home, 'src') }).args, '--bind')).toContain(join(home, 'src'))
  })

  test('compares real paths: a symlink to a credproxy dir is that dir, for --bind and cwd', () => {
    const r = request()
    const hidden = r.hiddenPaths[0] as string
    const link = join(dirname(hidden), 'link')
    symlinkSync(hidden, link)
    expect(() => buildBwrapArgs({ ...r, binds: [link] })).toThrow(/inside credproxy's own directory/)
    expect(() => buildBwrapArgs({ ...r, cwd: link })).toThrow(/inside credproxy's own directory/)
    // A link whose target contains the credproxy dir.
    const up = join(tempDir(), 'up')
    symlinkSync(dirname(hidden), up)
    expect(() => buildBwrapArgs({ ...r, binds: [up] })).toThrow(/contains credproxy's own directory/)
  })

  test('hides a credproxy dir that lies outside every tmpfs (CREDPROXY_HOME=/srv/...), after every bind', () => {
    const r = request()
    // Outside /tmp, /run and the home: nothing but its own tmpfs hides it.
    const outside = mkdtempSync(join('/var/lib', 'cp-bwrap-hidden-'))
    dirs.push(outside)
    const { args } = buildBwrapArgs({ ...r, hiddenPaths: [outside] })
    const coverAt = args.findIndex((a, i) => a === '--tmpfs' && args[i + 1] === outside)
    expect(coverAt).toBeGreaterThan(args.lastIndexOf('--bind'))
    // HOME unset: ~/.local/share/credproxy of the passwd home lies under no tmpfs either.
    expect(pairs(buildBwrapArgs({ ...r, hostEnv: {}, hiddenPaths: [outside] }).args, '--tmpfs')).toContain(outside)
    expect(() => buildBwrapArgs({ ...r, hiddenPaths: [join(outside, 'missing')] })).toThrow(/does not exist, so it cannot be hidden/)
  })

  test('the install under cwd is re-bound read-only after the cwd bind; host-executed files in cwd are read-only', () => {
    const r = request()
    mkdirSync(r.cwd)
    const install = join(r.cwd, 'node_modules')
    mkdirSync(install)
    writeFileSync(join(r.cwd, '.npmrc'), 'registry=x\n')
    mkdirSync(join(r.cwd, '.git', 'hooks'), { recursive: true })
    const { args, created } = buildBwrapArgs({ ...r, runtimeDirs: [install] })
    const cwdAt = args.findIndex((a, i) => a === '--bind' && args[i + 1] === r.cwd)
    const installAt = args.findIndex((a, i) => a === '--ro-bind' && args[i + 1] === install)
    expect(installAt).toBeGreaterThan(cwdAt)
    expect(pairs(args, '--ro-bind')).toEqual(expect.arrayContaining([join(r.cwd, '.npmrc'), join(r.cwd, '.git', 'hooks')]))
    // Missing ones get an empty read-only stand-in, and are listed for removal after the run.
    expect(args.join(' ')).toContain(`--ro-bind ${join(r.shimDir, '.empty')} ${join(r.cwd, '.envrc')}`)
    expect(args.join(' ')).toContain(`--tmpfs ${join(r.cwd, '.vscode')} --remount-ro ${join(r.cwd, '.vscode')}`)
    expect(created).toEqual(expect.arrayContaining([join(r.cwd, '.envrc'), join(r.cwd, '.vscode'), join(r.cwd, '.git', 'config')]))
    expect(created).not.toContain(join(r.cwd, '.npmrc'))
    symlinkSync('/etc/hostname', join(r.cwd, '.bashrc'))
    expect(() => buildBwrapArgs(r)).toThrow(/\.bashrc is a symbolic link/)
  })

  test('binds a node binary under the home as that one file, never the home (n with N_PREFIX=$HOME)', () => {
    const base = tempDir()
    const home = join(base, 'home')
    const hidden = join(home, '.local', 'share', 'credproxy')
    mkdirSync(hidden, { recursive: true })
    const node = join(home, 'bin', 'node')
    const { args } = buildBwrapArgs(request({ cwd: join(base, 'project'), hostEnv: { HOME: home }, hiddenPaths: [hidden], nodeFiles: [node] }))
    expect(pairs(args, '--ro-bind')).toContain(node)
    // Every bind after the tmpfs over the home (the host root comes before it).
    const after = args.slice(args.indexOf(home))
    const bound = [...pairs(after, '--ro-bind'), ...pairs(after, '--bind')]
    expect(bound).toContain(node)
    for (const guarded of [home, hidden]) expect(bound.filter((b) => isWithin(guarded, b))).toEqual([])
  })

  test('refuses to re-bind a runtime dir that is or contains the home or a credproxy dir', () => {
    const base = tempDir()
    const home = join(base, 'home')
    const hidden = join(base, 'cp-home')
    mkdirSync(hidden, { recursive: true })
    const r = request({ cwd: join(base, 'project'), hostEnv: { HOME: home }, hiddenPaths: [hidden] })
    expect(() => buildBwrapArgs({ ...r, runtimeDirs: [home] })).toThrow(`install directory ${home} contains your home directory ${home}`)
    // base is under /tmp, which the sandbox hides too, so it would be re-bound.
    expect(() => buildBwrapArgs({ ...r, runtimeDirs: [base] })).toThrow(CredproxyError)
    expect(() => buildBwrapArgs({ ...r, hostEnv: {}, runtimeDirs: [base] })).toThrow(`contains credproxy's own directory ${hidden}`)
    // A package dir inside the home is fine: bound alone, the rest of the home stays hidden.
    const pkg = join(home, 'src', 'credproxy', 'packages', 'cli')
    expect(pairs(buildBwrapArgs({ ...r, runtimeDirs: [pkg] }).args, '--ro-bind')).toContain(pkg)
  })

  test('refuses a working directory inside credproxy\'s own directory, and /', () => {
    const r = request()
    const hidden = r.hiddenPaths[0] as string
    expect(() => buildBwrapArgs({ ...r, cwd: join(hidden, 'data') })).toThrow(CredproxyError)
    expect(() => buildBwrapArgs({ ...r, cwd: '/' })).toThrow(/whole host writable/)
    expect(() => buildBwrapArgs({ ...r, binds: [hidden] })).toThrow(/must not see/)
  })

  test('hands the secret on fd 3 (bwrap turns it into a read-only 0400 file) and the seccomp program on fd 4, never in argv or env', () => {
    const secret = 'ab'.repeat(32)
    const plan = bwrapLaunchPlan(request(), secret)
    expect(Buffer.from(plan.fds[0] as Uint8Array).toString()).toBe(secret)
    expect(plan.args.join(' ')).not.toContain(secret)
    expect(Object.values(plan.env).join(' ')).not.toContain(secret)
    expect(plan.env['CREDPROXY_SECRET_FD']).toBeUndefined()
    expect(plan.env['CREDPROXY_SECRET_FILE']).toBe('/run/credproxy-secret/session-secret')
    expect(plan.args.join(' ')).toContain('--perms 0400 --ro-bind-data 3 /run/credproxy-secret/session-secret')
    expect(plan.env['CREDPROXY_SOCKET']).toBe('/run/credproxy/broker.sock')
  })
})

describe('buildSandboxEnv', () => {
  test('keeps display and locale settings, drops credproxy and secret-looking host vars', () => {
    const env = buildSandboxEnv(
      {
        TERM: 'xterm-256color',
        LANG: 'C.UTF-8',
        LC_ALL: 'C',
        NO_COLOR: '1',
        CREDPROXY_HOME: '/secret/place',
        CREDPROXY_SECRET_FD: '9',
        OPENAI_API_KEY: 'sk-host',
        GITHUB_TOKEN: 'ghp_host',
        AWS_SECRET_ACCESS_KEY: 'aws',
        DBUS_SESSION_BUS_ADDRESS: 'unix:path=/run/user/0/bus',
        SSH_AUTH_SOCK: '/tmp/ssh-agent',
        PATH: '/usr/bin',
      },
      { home: '/home/me', socketName: 'broker.sock' },
    )
    expect(env).toEqual({
      TERM: 'xterm-256color',
      LANG: 'C.UTF-8',
      LC_ALL: 'C',
      NO_COLOR: '1',
      PATH: '/run/credproxy-bin:/usr/bin',
      HOME: '/home/me',
      CREDPROXY_SOCKET: '/run/credproxy/broker.sock',
      CREDPROXY_SECRET_FD: '3',
    })
  })
})

describe('keyring seccomp filter coverage', () => {
  test('a 32-bit node gets both ABIs of its 64-bit kernel, not no filter at all', () => {
    expect(buildKeyringSeccompFilter('ia32')).toEqual(buildKeyringSeccompFilter('x64'))
    expect(buildKeyringSeccompFilter('arm')).toEqual(buildKeyringSeccompFilter('arm64'))
    expect(buildKeyringSeccompFilter('arm')).not.toBeNull()
  })

  test.runIf(process.platform === 'linux')('bwrap is not offered on an architecture without a filter (no silent fail-open)', () => {
    expect(buildKeyringSeccompFilter('riscv64')).toBeNull()
    expect(probeBwrap({ PATH: process.env['PATH'] ?? '/usr/bin:/bin' }, 'riscv64')).toMatch(/no keyring seccomp filter for riscv64/)
  })
})

const hasKeyctl = spawnSync('keyctl', ['--version'], { stdio: 'ignore' }).error === undefined

describe.runIf(hasKeyctl && process.platform === 'linux')('keyring seccomp filter in a real bwrap sandbox', () => {
  // A fresh host session keyring holding one key; bwrap children inherit it unless the filter cuts it off.
  function readKeyInside(withFilter: boolean): { stdout: string; status: number | null } {
    const filterPath = join(tempDir(), 'filter.bpf')
    writeFileSync(filterPath, buildKeyringSeccompFilter() as Buffer)
    const bwrap = ['bwrap', '--unshare-all', '--ro-bind', '/', '/', '--proc', '/proc', '--dev', '/dev']
    if (withFilter) bwrap.push('--seccomp', '4')
    bwrap.push('--', 'keyctl', 'print', '%user:credproxy-test-key')
    const script = `keyctl add user credproxy-test-key visible-secret @s >/dev/null && exec 4<"$0" && exec "$@"`
    const result = spawnSync('keyctl', ['session', '-', 'sh', '-c', script, filterPath, ...bwrap], { encoding: 'utf8' })
    return { stdout: result.stdout, status: result.status }
  }

  test('without the filter the sandbox reads the host session keyring (why the filter exists)', () => {
    expect(readKeyInside(false).stdout).toContain('visible-secret')
  })

  test('with the filter the keyring syscalls fail inside', () => {
    const result = readKeyInside(true)
    expect(result.stdout).not.toContain('visible-secret')
    expect(result.status).not.toBe(0)
  })
})
