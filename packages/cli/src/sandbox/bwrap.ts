// The bubblewrap backend: argv for `bwrap` that runs a command with every
// namespace unshared, a read-only host root with the secrets hidden under
// tmpfs, and only the session socket directory (read-only) and the working
// directory (read-write) bound in. Mount table: dev-docs/sandbox.md.
import { spawnSync } from 'node:child_process'
import { accessSync, constants as fsConstants, existsSync, lstatSync, realpathSync, rmdirSync, statSync, unlinkSync } from 'node:fs'
import { dirname, isAbsolute, join, resolve } from 'node:path'
import { buildKeyringSeccompFilter } from './seccomp.js'
import { buildSandboxEnv } from './sandbox-env.js'
import { bridgeInitArgv } from './egress-bridge.js'
import { EMPTY_FILE_NAME } from './shim.js'
import { isWithin } from './within.js'
import { SANDBOX_BIN_DIR, SANDBOX_SECRET_FILE, SANDBOX_SOCKET_DIR, SECCOMP_FD, SECRET_FD, type LaunchPlan, type SandboxRequest } from './types.js'
import { CredproxyError } from '../errors.js'

/** HOME inside when the host HOME is unusable (unset, relative or /). */
export const FALLBACK_SANDBOX_HOME = '/tmp/home'
/** Host directories replaced by an empty tmpfs: temporary files and runtime sockets of the host. */
export const HOST_SCRATCH_DIRS = ['/tmp', '/var/tmp', '/run'] as const
export { EMPTY_FILE_NAME, isWithin }

/** How long `bwrap --version` may take before bwrap counts as missing. */
export const BWRAP_PROBE_TIMEOUT_MS = 2_000


/** The path with every symlink resolved; the lexical absolute path when it does not exist (yet). */
export function realPath(path: string): string {
  try {
    return realpathSync(resolve(path))
  } catch {
    return resolve(path)
  }
}

export function sandboxHome(hostEnv: NodeJS.ProcessEnv): { hostHome: string | null; home: string } {
  const home = hostEnv['HOME']
  if (home === undefined || !isAbsolute(home) || resolve(home) === '/') return { hostHome: null, home: FALLBACK_SANDBOX_HOME }
  return { hostHome: realPath(home), home: resolve(home) }
}

/**
 * Refuse binds that would expose credproxy's own files, the home, or the whole host.
 * Compared by real path: `--bind ~/link` to a credproxy dir is that dir.
 */
export function checkBind(path: string, hiddenPaths: readonly string[], what: string, hostHome: string | null = null): void {
  const real = realPath(path)
  if (real === '/') {
    throw new CredproxyError('USAGE', `${what} is /, which would make the whole host writable inside the sandbox`, { hint: 'Run from a project directory.' })
  }
  for (const hidden of hiddenPaths.map(realPath)) {
    if (isWithin(real, hidden) || isWithin(hidden, real)) {
      const where = isWithin(real, hidden) ? 'is inside' : 'contains'
      throw new CredproxyError(
        'USAGE',
        `${what} ${path} ${where} credproxy's own directory ${hidden}, which the sandbox must not see`,
        { hint: 'Run from a project directory that neither holds nor lies in a credproxy directory, or choose another --bind.' },
      )
    }
  }
  if (hostHome !== null && isWithin(hostHome, real)) {
    throw new CredproxyError(
      'USAGE',
      `${what} ${path} is or contains your home directory ${hostHome}; the sandbox would get your whole home read-write`,
      { hint: 'Run from a project directory below your home (e.g. ~/src/project), or bind only that directory.' },
    )
  }
}

/**
 * Refuse to re-bind an install path that holds the host home or a credproxy dir
 * (the bind would undo the tmpfs over them: a node prefix of $HOME, a clone in /tmp),
 * or that lies inside a credproxy dir (the tmpfs over it would hide the install).
 */
export function checkRuntimePath(path: string, hostHome: string | null, hiddenPaths: readonly string[]): void {
  const real = realPath(path)
  const guarded = hiddenPaths.map((dir) => ({ dir: realPath(dir), what: "credproxy's own directory" }))
  if (hostHome !== null) guarded.unshift({ dir: hostHome, what: 'your home directory' })
  for (const { dir, what } of guarded) {
    if (isWithin(dir, real)) {
      throw new CredproxyError(
        'USAGE',
        `credproxy's install directory ${path} contains ${what} ${dir}; binding it into the sandbox would expose it`,
        { hint: 'Install credproxy (and its node_modules) in a directory that does not contain them, e.g. /opt/credproxy or a project checkout.' },
      )
    }
  }
  for (const { dir } of guarded.slice(hostHome === null ? 0 : 1)) {
    if (isWithin(real, dir)) {
      throw new CredproxyError(
        'USAGE',
        `credproxy's install directory ${path} lies inside credproxy's own directory ${dir}, which the sandbox must not see`,
        { hint: 'Install credproxy outside its data, state, config and runtime directories.' },
      )
    }
  }
}

/**
 * Files in the working directory that host programs run or obey on their own when
 * the user next works there (npm/yarn/pnpm config and hooks, direnv, git, shells,
 * editors, agent settings). Read-only inside, and a missing one cannot be created.
 * Why each one: dev-docs/sandbox.md "Host-executed files in the working directory".
 */
export const HOST_EXECUTED_FILES = [
  '.npmrc',
  '.yarnrc',
  '.yarnrc.yml',
  '.pnpmfile.cjs',
  '.envrc',
  '.gitconfig',
  '.gitmodules',
  '.bashrc',
  '.bash_profile',
  '.bash_login',
  '.profile',
  '.zshrc',
  '.zshenv',
  '.zprofile',
  '.zlogin',
  '.ripgreprc',
  '.mcp.json',
] as const
export const HOST_EXECUTED_DIRS = ['.vscode', '.idea', '.claude', '.devcontainer', '.husky'] as const
/** In a `.git` directory: what makes host git run code. */
const GIT_HOST_EXECUTED = { dirs: ['hooks'], files: ['config'] } as const

type Kind = 'missing' | 'symlink' | 'dir' | 'other'

function kindOf(path: string): Kind {
  try {
    const info = lstatSync(path)
    if (info.isSymbolicLink()) return 'symlink'
    return info.isDirectory() ? 'dir' : 'other'
  } catch {
    return 'missing'
  }
}

/** How a host-executed path is guarded: its own read-only bind, bound onto itself (a mount point cannot be renamed), or an empty read-only stand-in. */
export interface HostExecutedGuard {
  path: string
  how: 'ro' | 'pin' | 'empty-file' | 'empty-dir'
}

/**
 * What makes the host-executed files of cwd read-only inside. A missing one gets an
 * empty read-only stand-in, whose mount point the launcher creates on the host;
 * `created` lists those, for removal after the run (removeEmptyMountpoints).
 */
export function hostExecutedGuards(cwd: string): { guards: HostExecutedGuard[]; created: string[] } {
  const guards: HostExecutedGuard[] = []
  const created: string[] = []
  const protect = (path: string, dir: boolean): void => {
    const kind = kindOf(path)
    if (kind === 'symlink') {
      // A link is not a mount point: the sandbox could replace it and the host would follow the new one.
      throw new CredproxyError(
        'USAGE',
        `${path} is a symbolic link, which credproxy cannot make read-only inside the sandbox`,
        { hint: 'Replace the link with a copy of its target, or run from another directory.' },
      )
    }
    if (kind !== 'missing') guards.push({ path, how: 'ro' })
    else {
      created.push(path)
      guards.push({ path, how: dir ? 'empty-dir' : 'empty-file' })
    }
  }
  for (const name of HOST_EXECUTED_FILES) protect(join(cwd, name), false)
  for (const name of HOST_EXECUTED_DIRS) protect(join(cwd, name), true)
  const git = join(cwd, '.git')
  if (kindOf(git) === 'dir') {
    // Bound onto itself so it is a mount point: `mv .git x && mkdir .git` then fails (EBUSY).
    guards.push({ path: git, how: 'pin' })
    for (const name of GIT_HOST_EXECUTED.dirs) protect(join(git, name), true)
    for (const name of GIT_HOST_EXECUTED.files) protect(join(git, name), false)
  } else {
    // A worktree's `.git` file names its git dir; no `.git` at all: `git init` inside would plant hooks.
    protect(git, kindOf(git) === 'missing')
  }
  return { guards, created }
}

/** The bwrap mounts for hostExecutedGuards. */
export function protectHostExecuted(cwd: string, emptyFile: string): { args: string[]; created: string[] } {
  const { guards, created } = hostExecutedGuards(cwd)
  const args = guards.flatMap(({ path, how }): string[] => {
    if (how === 'ro') return ['--ro-bind', path, path]
    if (how === 'pin') return ['--bind', path, path]
    if (how === 'empty-file') return ['--ro-bind', emptyFile, path]
    return ['--tmpfs', path, '--remount-ro', path]
  })
  return { args, created }
}

/** Remove the mount points bwrap left for missing host-executed files, where still empty. */
export function removeEmptyMountpoints(paths: readonly string[]): void {
  for (const path of [...paths].reverse()) {
    try {
      const info = lstatSync(path)
      if (info.isDirectory()) rmdirSync(path)
      else if (info.isFile() && info.size === 0) unlinkSync(path)
    } catch {
      // Gone already, or the host put something there meanwhile: theirs to keep.
    }
  }
}

export interface BwrapArgs {
  args: string[]
  env: Record<string, string>
  seccomp: Buffer | null
  /** Host paths bwrap creates as mount points (missing host-executed files), to remove after the run. */
  created: string[]
}

/**
 * The bwrap argv. Order matters: bwrap applies mounts in sequence, so what must stay
 * read-only or hidden is mounted after every bind that might contain it.
 */
export function buildBwrapArgs(request: SandboxRequest): BwrapArgs {
  const { hostHome, home } = sandboxHome(request.hostEnv)
  const cwd = realPath(request.cwd)
  checkBind(request.cwd, request.hiddenPaths, 'the working directory', hostHome)
  for (const bind of request.binds) checkBind(bind, request.hiddenPaths, '--bind', hostHome)
  const binds = request.binds.map(realPath)
  const hidden: string[] = []
  for (const path of request.hiddenPaths) {
    const real = realPath(path)
    if (!existsSync(real)) {
      // A missing dir made on the host during the run would appear inside through the read-only root.
      throw new CredproxyError('USAGE', `credproxy's directory ${path} does not exist, so it cannot be hidden from the sandbox`, { hint: 'Create it (credproxy run does) and rerun.' })
    }
    hidden.push(real)
  }

  const args = ['--unshare-all']
  if (request.allowNetwork) args.push('--share-net')
  // --new-session: no controlling terminal inside, so TIOCSTI cannot push keystrokes into the host shell.
  args.push('--die-with-parent', '--new-session', '--ro-bind', '/', '/')
  const scratch = [...HOST_SCRATCH_DIRS]
  if (hostHome !== null) args.push('--tmpfs', hostHome)
  for (const dir of scratch) args.push('--tmpfs', dir)
  args.push('--proc', '/proc', '--dev', '/dev')
  // Key descriptions of the host session keyring; covering them also stops a nested procfs mount.
  const emptyFile = join(request.shimDir, EMPTY_FILE_NAME)
  // Absent on a kernel without CONFIG_KEYS: nothing to cover there, and bwrap could not create them.
  for (const file of PROC_KEY_FILES) if (existsSync(file)) args.push('--ro-bind', emptyFile, file)
  if (hostHome === null) args.push('--dir', FALLBACK_SANDBOX_HOME)
  args.push('--bind', cwd, cwd)
  for (const bind of binds) args.push('--bind', bind, bind)
  // Before the install re-binds: when cwd is inside the install, those make it all read-only anyway.
  const protectedFiles = protectHostExecuted(cwd, emptyFile)
  args.push(...protectedFiles.args)
  // The node binary and the credproxy install: re-bound read-only where a tmpfs above hid them
  // (nvm under $HOME, an npx cache in /tmp) or a read-write bind above exposed them (a local install under cwd).
  const covered = [...scratch, ...(hostHome === null ? [] : [hostHome])]
  const writable = [cwd, ...binds]
  for (const path of dedupeNested([...request.nodeFiles, ...request.runtimeDirs].map(realPath))) {
    if (!covered.some((c) => isWithin(path, c)) && !writable.some((w) => isWithin(path, w))) continue
    checkRuntimePath(path, hostHome, hidden)
    args.push('--ro-bind', path, path)
  }
  // Every credproxy dir that no tmpfs above already hides, wherever it lives (/srv, /opt, a home not named by HOME).
  const bound = [...writable, ...request.runtimeDirs.map(realPath), ...request.nodeFiles.map(realPath)]
  for (const dir of dedupeNested(hidden)) if (isVisible(dir, bound, covered)) args.push('--tmpfs', dir)
  // bwrap copies the sealed memfd on fd 3 into a read-only 0400 file and closes the fd, so the secret
  // reaches every descendant, whoever spawned it (Node and Python do not pass fd 3 on).
  args.push('--perms', '0400', '--ro-bind-data', String(SECRET_FD), SANDBOX_SECRET_FILE)
  args.push('--ro-bind', request.socketDir, SANDBOX_SOCKET_DIR)
  args.push('--ro-bind', request.shimDir, SANDBOX_BIN_DIR)
  args.push('--chdir', cwd)
  const seccomp = buildKeyringSeccompFilter()
  if (seccomp !== null) args.push('--seccomp', String(SECCOMP_FD))
  // With --egress and no network, a small init starts the forwarder to the proxy socket first.
  const egress = request.egress
  const command = egress === undefined || request.allowNetwork ? request.command : bridgeInitArgv(request.command, `${SANDBOX_SOCKET_DIR}/${egress.socketName}`, egress)
  args.push('--', ...command)
  const env = { ...buildSandboxEnv(request.hostEnv, { home, socketName: request.socketName, secretFile: SANDBOX_SECRET_FILE }), ...egress?.env }
  return { args, env, seccomp, created: protectedFiles.created }
}

/** Visible inside unless under a tmpfs and not re-exposed by a bind. */
function isVisible(path: string, bound: readonly string[], covered: readonly string[]): boolean {
  if (bound.some((b) => isWithin(path, b) || isWithin(b, path))) return true
  return !covered.some((c) => isWithin(path, c))
}

/** /proc files listing kernel keys the sandbox's processes can see. */
const PROC_KEY_FILES = ['/proc/keys', '/proc/key-users'] as const

function dedupeNested(paths: readonly string[]): string[] {
  const sorted = [...new Set(paths.map((p) => resolve(p)))].sort((a, b) => a.length - b.length)
  const kept: string[] = []
  for (const path of sorted) if (!kept.some((k) => isWithin(path, k))) kept.push(path)
  return kept
}

export function bwrapLaunchPlan(request: SandboxRequest, secret: string): LaunchPlan {
  const { args, env, seccomp, created } = buildBwrapArgs(request)
  const fds: Uint8Array[] = [Buffer.from(secret, 'utf8')]
  if (seccomp !== null) fds.push(seccomp)
  return { backend: 'bwrap', file: 'bwrap', args, env, fds, mountpoints: created }
}

/** null when bwrap runs here, else a sentence saying why not and what to install. */
export function probeBwrap(env: NodeJS.ProcessEnv = process.env, arch: NodeJS.Architecture = process.arch): string | null {
  if (process.platform !== 'linux') return `bubblewrap needs Linux (this is ${process.platform})`
  // Without the filter the sandbox could read the host session keyring: refuse rather than run without it.
  if (buildKeyringSeccompFilter(arch) === null) return `credproxy has no keyring seccomp filter for ${arch}; use --sandbox docker or podman`
  const result = spawnSync('bwrap', ['--unshare-all', '--ro-bind', '/', '/', '--', 'true'], {
    timeout: BWRAP_PROBE_TIMEOUT_MS,
    stdio: 'ignore',
    env: { PATH: env['PATH'] ?? '/usr/bin:/bin' },
  })
  if (result.error !== undefined) {
    return 'bwrap (bubblewrap) is not installed: apt-get install bubblewrap (Debian/Ubuntu) or dnf install bubblewrap (Fedora)'
  }
  if (result.status !== 0) {
    return 'bwrap is installed but cannot create namespaces here (unprivileged user namespaces may be disabled: sysctl kernel.unprivileged_userns_clone=1)'
  }
  return null
}

/** What a shell reports for a command it cannot find. */

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK)
    return statSync(path).isFile()
  } catch {
    return false
  }
}

/**
 * Refuse, before launching, a command the sandbox would not find (bwrap would print
 * only its own "execvp" line): not on PATH, or only in a directory the sandbox hides.
 * `hidden` lists those (home, /tmp...); `visible` the binds that re-expose parts of them.
 */
export function checkCommandFound(command: string, options: { cwd: string; path: string; hidden: readonly string[]; visible: readonly string[] }): void {
  if (command === 'credproxy') return // the shim, first on PATH inside
  const candidates = command.includes('/') ? [resolve(options.cwd, command)] : options.path.split(':').filter((dir) => isAbsolute(dir)).map((dir) => join(dir, command))
  const found = candidates.filter(isExecutableFile)
  if (found.length === 0) {
    throw new CredproxyError(
      'COMMAND_NOT_FOUND',
      `command not found: ${command}`,
      { hint: command.includes('/') ? 'Check the path (relative paths start at the working directory).' : 'Check the name, or pass its full path; PATH inside is the host PATH.' },
    )
  }
  const seen = found.find((path) => {
    const real = realPath(path)
    return options.visible.some((dir) => isWithin(real, dir)) || !options.hidden.some((dir) => isWithin(real, dir))
  })
  if (seen === undefined) {
    const where = found[0] as string
    throw new CredproxyError(
      'COMMAND_NOT_FOUND',
      `${command.includes('/') ? command : `${command} (${where})`} is in a directory the sandbox hides (your home, /tmp, /var/tmp and /run are not visible inside)`,
      { hint: `Install it outside those, or pass --bind ${dirname(where)} to make that directory visible (read-write).` },
    )
  }
}
