// The bubblewrap backend: argv for `bwrap` that runs a command with every
// namespace unshared, a read-only host root with the secrets hidden under
// tmpfs, and only the session socket directory (read-only) and the working
// directory (read-write) bound in. Mount table: dev-docs/sandbox.md.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { isAbsolute, relative, resolve } from 'node:path'
import { CliError } from '../cli-io.js'
import { EXIT } from '../exit-codes.js'
import { buildKeyringSeccompFilter } from './seccomp.js'
import { buildSandboxEnv } from './sandbox-env.js'
import { SANDBOX_BIN_DIR, SANDBOX_SOCKET_DIR, SECCOMP_FD, type LaunchPlan, type SandboxRequest } from './types.js'

/** HOME inside when the host HOME is unusable (unset, relative or /). */
export const FALLBACK_SANDBOX_HOME = '/tmp/home'
/** Host directories replaced by an empty tmpfs: temporary files and runtime sockets of the host. */
export const HOST_SCRATCH_DIRS = ['/tmp', '/var/tmp', '/run'] as const
/** How long `bwrap --version` may take before bwrap counts as missing. */
export const BWRAP_PROBE_TIMEOUT_MS = 2_000

/** true when `inner` is `outer` or lies below it. */
export function isWithin(inner: string, outer: string): boolean {
  const rel = relative(outer, inner)
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel))
}

export function sandboxHome(hostEnv: NodeJS.ProcessEnv): { hostHome: string | null; home: string } {
  const home = hostEnv['HOME']
  if (home === undefined || !isAbsolute(home) || resolve(home) === '/') return { hostHome: null, home: FALLBACK_SANDBOX_HOME }
  return { hostHome: resolve(home), home: resolve(home) }
}

/** Refuse binds that would expose credproxy's own files or make the whole host writable. */
export function checkBind(path: string, hiddenPaths: readonly string[], what: string): void {
  if (resolve(path) === '/') {
    throw new CliError(`${what} is /, which would make the whole host writable inside the sandbox`, 'Run from a project directory.', EXIT.USAGE)
  }
  for (const hidden of hiddenPaths) {
    if (isWithin(resolve(path), resolve(hidden))) {
      throw new CliError(
        `${what} ${path} is inside credproxy's own directory ${hidden}, which the sandbox must not see`,
        'Run from a project directory, or choose another --bind.',
        EXIT.USAGE,
      )
    }
  }
}

/**
 * Refuse to re-bind an install path that holds the host home or a credproxy dir:
 * the bind would undo the tmpfs over them (a node prefix of $HOME, a clone in /tmp).
 */
export function checkRuntimePath(path: string, hostHome: string | null, hiddenPaths: readonly string[]): void {
  const guarded = hiddenPaths.map((dir) => ({ dir, what: "credproxy's own directory" }))
  if (hostHome !== null) guarded.unshift({ dir: hostHome, what: 'your home directory' })
  for (const { dir, what } of guarded) {
    if (isWithin(resolve(dir), resolve(path))) {
      throw new CliError(
        `credproxy's install directory ${path} contains ${what} ${dir}; binding it into the sandbox would expose it`,
        'Install credproxy (and its node_modules) in a directory that does not contain them, e.g. /opt/credproxy or a project checkout.',
        EXIT.USAGE,
      )
    }
  }
}

/**
 * The bwrap argv. Order matters: bwrap applies mounts in sequence, so the hidden
 * credproxy dirs are mounted over last, after any bind that might contain them.
 */
export function buildBwrapArgs(request: SandboxRequest): { args: string[]; env: Record<string, string>; seccomp: Buffer | null } {
  const { hostHome, home } = sandboxHome(request.hostEnv)
  const cwd = resolve(request.cwd)
  checkBind(cwd, request.hiddenPaths, 'the working directory')
  for (const bind of request.binds) checkBind(bind, request.hiddenPaths, '--bind')

  const args = ['--unshare-all']
  if (request.allowNetwork) args.push('--share-net')
  // --new-session: no controlling terminal inside, so TIOCSTI cannot push keystrokes into the host shell.
  args.push('--die-with-parent', '--new-session', '--ro-bind', '/', '/')
  const scratch = [...HOST_SCRATCH_DIRS]
  if (hostHome !== null) args.push('--tmpfs', hostHome)
  for (const dir of scratch) args.push('--tmpfs', dir)
  args.push('--proc', '/proc', '--dev', '/dev')
  if (hostHome === null) args.push('--dir', FALLBACK_SANDBOX_HOME)
  // The node binary and the credproxy install, if a tmpfs above just hid them (nvm under $HOME, an npx
  // cache in /tmp). Skipped under cwd, which is bound read-write below anyway.
  const covered = [...scratch, ...(hostHome === null ? [] : [hostHome]), ...request.hiddenPaths]
  for (const path of dedupeNested([...request.nodeFiles, ...request.runtimeDirs])) {
    if (!covered.some((c) => isWithin(path, c)) || isWithin(path, cwd)) continue
    checkRuntimePath(path, hostHome, request.hiddenPaths)
    args.push('--ro-bind', path, path)
  }
  args.push('--bind', cwd, cwd)
  for (const bind of request.binds) args.push('--bind', resolve(bind), resolve(bind))
  for (const hidden of dedupeNested(request.hiddenPaths)) {
    // A hidden dir only needs covering where something bound above made it visible again.
    if (existsSync(hidden) && isVisible(hidden, [cwd, ...request.binds.map((b) => resolve(b)), ...request.runtimeDirs, ...request.nodeFiles], covered)) {
      args.push('--tmpfs', hidden)
    }
  }
  args.push('--ro-bind', request.socketDir, SANDBOX_SOCKET_DIR)
  args.push('--ro-bind', request.shimDir, SANDBOX_BIN_DIR)
  args.push('--chdir', cwd)
  const seccomp = buildKeyringSeccompFilter()
  if (seccomp !== null) args.push('--seccomp', String(SECCOMP_FD))
  args.push('--', ...request.command)
  return { args, env: buildSandboxEnv(request.hostEnv, { home, socketName: request.socketName }), seccomp }
}

/** Visible inside unless under a tmpfs and not re-exposed by a bind. */
function isVisible(path: string, bound: readonly string[], covered: readonly string[]): boolean {
  if (bound.some((b) => isWithin(path, b) || isWithin(b, path))) return true
  return !covered.some((c) => isWithin(path, c))
}

function dedupeNested(paths: readonly string[]): string[] {
  const sorted = [...new Set(paths.map((p) => resolve(p)))].sort((a, b) => a.length - b.length)
  const kept: string[] = []
  for (const path of sorted) if (!kept.some((k) => isWithin(path, k))) kept.push(path)
  return kept
}

export function bwrapLaunchPlan(request: SandboxRequest, secret: string): LaunchPlan {
  const { args, env, seccomp } = buildBwrapArgs(request)
  const fds: Uint8Array[] = [Buffer.from(secret, 'utf8')]
  if (seccomp !== null) fds.push(seccomp)
  return { backend: 'bwrap', file: 'bwrap', args, env, fds }
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
