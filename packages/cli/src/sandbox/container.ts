// docker and podman share one argv builder: the flags that differ are the
// user mapping (podman keeps the host uid with --userns=keep-id) and the engine
// name. How the secret travels, and why: dev-docs/sandbox.md "Containers".
import { execFile, spawnSync } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { backoffDelay } from '@credproxy/core/client'
import { checkBind, checkRuntimePath, EMPTY_FILE_NAME, hostExecutedGuards, realPath, sandboxHome } from './bwrap.js'
import { bridgeInitArgv } from './egress-bridge.js'
import { buildSandboxEnv, DEFAULT_PATH } from './sandbox-env.js'
import { SANDBOX_BIN_DIR, SANDBOX_SECRET_FILE, SANDBOX_SOCKET_DIR, type SandboxRequest } from './types.js'

export type Engine = 'docker' | 'podman'

/** Image used when --image is not given: it must have `node` for the credproxy shim. */
export const DEFAULT_CONTAINER_IMAGE = 'node:20-bookworm-slim'
/** Where the one-shot host secret directory appears inside the container (emptied by the prelude). */
export const CONTAINER_SECRET_DIR = '/run/credproxy-secret-in'
export const CONTAINER_SECRET_FILE = 'session-secret'
/** HOME inside a container: a fresh tmpfs. */
export const CONTAINER_HOME = '/tmp/home'
/** How long `docker info` / `podman info` may take before the engine counts as unreachable. */
export const ENGINE_PROBE_TIMEOUT_MS = 5_000
/** Every container credproxy starts carries this label (`docker ps -a --filter label=credproxy`). */
export const CONTAINER_LABEL = 'credproxy'

export interface ContainerIdentity {
  uid: number
  gid: number
}

/** The broker creates this file in the secret dir once it knows the container's pid (its peer check admits nothing before). */
export const CONTAINER_READY_FILE = 'ready'
/** How many times the prelude looks for the ready file (10 ms apart: a little over the pid polling's ~3 minutes). */
export const CONTAINER_READY_CHECKS = 20_000
/** The prelude's exit code when the broker never saw the container run. */
export const CONTAINER_NOT_READY_EXIT = 125

/**
 * Waits until the broker knows the container (else the command's first request would be
 * refused by the peer check), copies the secret to a 0400 file on the container's own tmpfs
 * (where every process inside finds it, as with bwrap), deletes the host file, runs the command.
 */
const SECRET_PRELUDE = [
  `d=${CONTAINER_SECRET_DIR}; i=0`,
  `until [ -e "$d/${CONTAINER_READY_FILE}" ]; do`,
  '  i=$((i+1))',
  `  if [ "$i" -gt ${CONTAINER_READY_CHECKS} ]; then echo "credproxy: the broker never saw this container run" >&2; exit ${CONTAINER_NOT_READY_EXIT}; fi`,
  '  sleep 0.01',
  'done',
  `f="$d/${CONTAINER_SECRET_FILE}"; umask 0277 && cat "$f" > ${SANDBOX_SECRET_FILE} && rm -f "$f" "$d/${CONTAINER_READY_FILE}" && exec "$@"`,
].join('\n')

export function buildContainerArgs(
  engine: Engine,
  request: SandboxRequest,
  options: { secretDir: string; name: string; tty: boolean; identity: ContainerIdentity },
): string[] {
  const cwd = realPath(request.cwd)
  const { hostHome } = sandboxHome(request.hostEnv)
  checkBind(request.cwd, request.hiddenPaths, 'the working directory', hostHome)
  for (const bind of request.binds) checkBind(bind, request.hiddenPaths, '--bind', hostHome)
  const args = ['run', '--rm', '-i', '--init', '--name', options.name, '--label', `${CONTAINER_LABEL}=run`]
  if (options.tty) args.push('-t')
  args.push('--cap-drop=ALL', '--security-opt', 'no-new-privileges')
  // Rootless podman maps the host uid with keep-id; rootful podman refuses it (the uid is already the host's).
  if (engine === 'podman' && options.identity.uid !== 0) args.push('--userns=keep-id')
  args.push('--user', `${options.identity.uid}:${options.identity.gid}`)
  if (!request.allowNetwork) args.push('--network', 'none')
  args.push('--tmpfs', `${CONTAINER_HOME}:rw,mode=1777`)
  // Memory only, never the image's disk layer: the prelude copies the secret here.
  args.push('--tmpfs', `${dirname(SANDBOX_SECRET_FILE)}:rw,mode=1777`)
  args.push('-v', `${request.socketDir}:${SANDBOX_SOCKET_DIR}:ro`)
  args.push('-v', `${request.shimDir}:${SANDBOX_BIN_DIR}:ro`)
  // Read-write only so the prelude can delete the secret once it holds it open.
  args.push('-v', `${options.secretDir}:${CONTAINER_SECRET_DIR}:rw`)
  // Only the install's package dirs: the image runs its own node, and a dir holding the home would expose it.
  for (const dir of request.runtimeDirs) {
    checkRuntimePath(dir, hostHome, request.hiddenPaths)
    args.push('-v', `${dir}:${dir}:ro`)
  }
  args.push('-v', `${cwd}:${cwd}:rw`, '-w', cwd)
  for (const bind of request.binds) args.push('-v', `${realPath(bind)}:${realPath(bind)}:rw`)
  // The engine orders mounts by target depth, so these land over the cwd mount above.
  for (const { path, how } of hostExecutedGuards(cwd).guards) {
    if (how === 'ro') args.push('-v', `${path}:${path}:ro`)
    else if (how === 'pin') args.push('-v', `${path}:${path}:rw`)
    else if (how === 'empty-file') args.push('-v', `${join(request.shimDir, EMPTY_FILE_NAME)}:${path}:ro`)
    else args.push('--tmpfs', `${path}:ro`)
  }
  const { egress } = request
  const env = {
    ...buildSandboxEnv(request.hostEnv, { home: CONTAINER_HOME, socketName: request.socketName, path: DEFAULT_PATH, secretFile: SANDBOX_SECRET_FILE }),
    ...egress?.env,
  }
  // The allowlisted env holds no secret (sandbox-env.ts), so NAME=VALUE on the argv is fine.
  for (const [name, value] of Object.entries(env).sort(([a], [b]) => a.localeCompare(b))) args.push('-e', `${name}=${value}`)
  args.push(request.image ?? DEFAULT_CONTAINER_IMAGE)
  // With --egress the forwarder starts first, network or not: the host's loopback listener is
  // out of a container's reach, so the proxy is always its socket, mounted with the session dir.
  const command = egress === undefined ? request.command : bridgeInitArgv(request.command, `${SANDBOX_SOCKET_DIR}/${egress.socketName}`, egress, 'node')
  args.push('/bin/sh', '-c', SECRET_PRELUDE, 'credproxy-sandbox', ...command)
  return args
}

/** A 0700 host directory holding the secret file (0600) until the container's prelude deletes it. */
export async function writeSecretDir(secret: string): Promise<{ dir: string; ready: () => Promise<void>; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'credproxy-secret-'))
  await writeFile(join(dir, CONTAINER_SECRET_FILE), `${secret}\n`, { mode: 0o600 })
  return {
    dir,
    ready: () => writeFile(join(dir, CONTAINER_READY_FILE), '', { mode: 0o600 }),
    remove: () => rm(dir, { recursive: true, force: true }),
  }
}

/** null when the engine answers `info`, else a sentence naming what to install or start. */
export function probeEngine(engine: Engine, env: NodeJS.ProcessEnv = process.env): string | null {
  // podman's info has no ServerVersion: asking for it fails even where podman works.
  const result = spawnSync(engine, ['info', '--format', engine === 'docker' ? '{{.ServerVersion}}' : '{{.Version.Version}}'], {
    timeout: ENGINE_PROBE_TIMEOUT_MS,
    stdio: 'ignore',
    env,
  })
  if (result.error !== undefined && (result.error as NodeJS.ErrnoException).code === 'ENOENT') {
    return engine === 'docker'
      ? 'docker is not installed: install Docker Engine (https://docs.docker.com/engine/install/)'
      : 'podman is not installed: apt-get install podman (Debian/Ubuntu) or dnf install podman (Fedora)'
  }
  if (result.error !== undefined || result.status !== 0) {
    return engine === 'docker'
      ? 'docker is installed but no Docker engine is reachable: start it (sudo systemctl start docker) or set DOCKER_HOST'
      : 'podman is installed but cannot run containers here: run `podman info` to see why (rootless setup, cgroups)'
  }
  return null
}

/** How many times the broker asks the engine for the container's pid before giving up. */
export const CONTAINER_PID_TRIES = 100
/** First pause between two asks; it doubles up to the cap below: about 3 minutes in all (an image pull). */
export const CONTAINER_PID_INTERVAL_MS = 25
const CONTAINER_PID_MAX_INTERVAL_MS = 2_000

/** Host pid of a container's init, or null while it does not run (yet). */
export type ContainerPidLookup = () => Promise<number | null>

/** `inspect` run asynchronously: the broker's event loop keeps serving while the engine answers. */
export function inspectContainerPid(engine: Engine, name: string, env: NodeJS.ProcessEnv = process.env): Promise<number | null> {
  return new Promise((resolvePid) => {
    execFile(engine, ['inspect', '--format', '{{.State.Pid}}', name], { timeout: ENGINE_PROBE_TIMEOUT_MS, encoding: 'utf8', env }, (error, stdout) => {
      const pid = Number(stdout.trim())
      resolvePid(error === null && Number.isInteger(pid) && pid > 0 ? pid : null)
    })
  })
}

export interface ContainerPidWatch {
  /** The pid once found, else null. Only reads the cache: the peer check calls this on every accept. */
  current(): number | null
  /** Settles with the pid, or null once the tries ran out or stop() was called. */
  found: Promise<number | null>
  stop(): void
}

/** Polls lookup from now on, with backoff and a bounded number of tries, and caches the pid it finds. */
export function watchContainerPid(
  lookup: ContainerPidLookup,
  options: { tries?: number; intervalMs?: number } = {},
): ContainerPidWatch {
  const tries = options.tries ?? CONTAINER_PID_TRIES
  const interval = options.intervalMs ?? CONTAINER_PID_INTERVAL_MS
  let pid: number | null = null
  let stopped = false
  let timer: NodeJS.Timeout | undefined
  let wake: (() => void) | undefined
  const pause = (attempt: number): Promise<void> =>
    new Promise((resume) => {
      wake = resume
      timer = setTimeout(resume, backoffDelay(attempt - 1, { baseMs: interval, maxMs: CONTAINER_PID_MAX_INTERVAL_MS, jitter: false }))
      timer.unref()
    })
  const found = (async (): Promise<number | null> => {
    for (let attempt = 0; attempt < tries && !stopped; attempt++) {
      if (attempt > 0) await pause(attempt)
      if (stopped) break
      const answer = await lookup().catch(() => null)
      if (answer !== null && !stopped) {
        pid = answer
        return pid
      }
    }
    return null
  })()
  const stop = (): void => {
    stopped = true
    clearTimeout(timer)
    wake?.()
  }
  return { current: () => pid, found, stop }
}
