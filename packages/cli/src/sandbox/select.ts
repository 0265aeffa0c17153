// --sandbox auto|bwrap|docker|podman|none: pick a backend that works here, say
// which on stderr, and turn a request into a ready-to-spawn LaunchPlan.
import { randomBytes } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { writeSessionSecretFile } from '../broker/session-secret-file.js'
import type { Writable } from 'node:stream'
import { writeLine } from '../cli-io.js'
import { bwrapLaunchPlan, checkCommandFound, HOST_SCRATCH_DIRS, hostExecutedGuards, probeBwrap, realPath, removeEmptyMountpoints, sandboxHome } from './bwrap.js'
import { buildContainerArgs, ENGINE_PROBE_TIMEOUT_MS, probeEngine, writeSecretDir, type Engine } from './container.js'
import { addLegacyClientEnv, DEFAULT_PATH } from './sandbox-env.js'
import { createShim, nodeBinary, nodeFiles, runtimeDirs } from './shim.js'
import { SANDBOX_CHOICES, type LaunchPlan, type SandboxChoice, type SandboxName, type SandboxRequest } from './types.js'
import { CredproxyError } from '../errors.js'

export const NONE_WARNING =
  'credproxy: WARNING: --sandbox none: the command runs WITHOUT isolation and can read every file and credential you can'

export function parseSandboxChoice(value: string | undefined): SandboxChoice {
  const choice = value ?? 'auto'
  if (!(SANDBOX_CHOICES as readonly string[]).includes(choice)) {
    throw new CredproxyError(
      'USAGE',
      `unknown sandbox '${choice}'`,
      { hint: `Use one of: ${SANDBOX_CHOICES.join(', ')} (e.g. credproxy run --sandbox bwrap -- CMD).` },
    )
  }
  return choice as SandboxChoice
}

type Probe = (name: Exclude<SandboxName, 'none'>, env: NodeJS.ProcessEnv) => string | null

const defaultProbe: Probe = (name, env) => (name === 'bwrap' ? probeBwrap(env) : probeEngine(name, env))

/**
 * The backend to use. An explicit choice that cannot run is an error naming what
 * to install; auto tries bwrap, docker, podman in turn and never falls back to none.
 */
export function selectSandbox(
  choice: SandboxChoice,
  env: NodeJS.ProcessEnv,
  stderr: Writable,
  probe: Probe = defaultProbe,
): SandboxName {
  if (choice === 'none') {
    writeLine(stderr, NONE_WARNING)
    return 'none'
  }
  if (choice !== 'auto') {
    const problem = probe(choice, env)
    if (problem !== null) {
      throw new CredproxyError('UNAVAILABLE', `the ${choice} sandbox is not available: ${problem}`, { hint: 'Install or start it, or pick another with --sandbox.' })
    }
    return choice
  }
  const order: Array<Exclude<SandboxName, 'none'>> = process.platform === 'linux' ? ['bwrap', 'docker', 'podman'] : ['docker', 'podman']
  const problems: string[] = []
  for (const name of order) {
    const problem = probe(name, env)
    if (problem === null) {
      writeLine(stderr, `credproxy: sandbox: ${name} (auto)`)
      return name
    }
    problems.push(`  ${name}: ${problem}`)
  }
  throw new CredproxyError(
    'UNAVAILABLE',
    `no sandbox backend works on this machine:\n${problems.join('\n')}`,
    { hint: 'Install bubblewrap (Linux) or start Docker/Podman; `--sandbox none` runs without isolation.' },
  )
}

export interface PreparedLaunch {
  plan: LaunchPlan
  /** Own process group, so terminal signals reach only credproxy, which forwards them. */
  detached: boolean
  containerName?: string
  engine?: Engine
  /** Containers: tells the prelude inside that the broker knows the container's pid (it waits for that). */
  containerReady?: () => Promise<void>
  /** Remove the shim and any secret file; remove the container if it still exists. */
  cleanup(): Promise<void>
}

/** `--sandbox none`: the secret file's name in the session directory (removed before the directory). */
export const NONE_SECRET_FILE = 'session-secret'

export type LaunchInput = Omit<SandboxRequest, 'shimDir' | 'runtimeDirs' | 'nodeFiles'>

export async function prepareLaunch(
  backend: SandboxName,
  input: LaunchInput,
  secret: string,
  tty: boolean,
): Promise<PreparedLaunch> {
  const container = backend === 'docker' || backend === 'podman'
  for (const bind of input.binds) {
    // bwrap would stop with its own "Can't find source path"; a container engine would create it.
    if (!existsSync(bind)) throw new CredproxyError('USAGE', `--bind ${bind} does not exist`, { hint: 'Create it first, or check the path.' })
  }
  // The real binary: bwrap binds that file, not a symlink to it in a hidden dir.
  const shim = await createShim(container ? 'node' : nodeBinary())
  const request: SandboxRequest = { ...input, shimDir: shim.dir, runtimeDirs: runtimeDirs(), nodeFiles: container ? [] : nodeFiles() }
  try {
    if (backend === 'bwrap') {
      const { hostHome } = sandboxHome(input.hostEnv)
      const [file] = input.command
      if (file !== undefined) {
        checkCommandFound(file, {
          cwd: input.cwd,
          path: input.hostEnv['PATH'] ?? DEFAULT_PATH,
          hidden: [...HOST_SCRATCH_DIRS, ...(hostHome === null ? [] : [hostHome])],
          visible: [realPath(input.cwd), ...input.binds.map(realPath), ...request.nodeFiles.map(realPath), ...request.runtimeDirs.map(realPath)],
        })
      }
      const plan = bwrapLaunchPlan(request, secret)
      if (input.legacyClients === true) addLegacyClientEnv(plan, plan.env['CREDPROXY_SOCKET'] ?? '')
      const cleanup = async (): Promise<void> => {
        removeEmptyMountpoints(plan.mountpoints ?? [])
        await shim.remove()
      }
      return { plan, detached: true, cleanup }
    }
    if (backend === 'none') {
      // No isolation: the host env minus credproxy's own settings, plus the real socket path.
      const env: Record<string, string> = {}
      for (const [name, value] of Object.entries(input.hostEnv)) {
        if (value !== undefined && !name.startsWith('CREDPROXY_')) env[name] = value
      }
      env['PATH'] = `${shim.dir}:${input.hostEnv['PATH'] ?? ''}`
      env['CREDPROXY_SOCKET'] = `${input.socketDir}/${input.socketName}`
      for (const [name, value] of Object.entries(input.egress?.env ?? {})) {
        // The user's own NODE_OPTIONS stay, after the proxy preload.
        env[name] = name === 'NODE_OPTIONS' && env[name] !== undefined ? `${value} ${env[name]}` : value
      }
      const [file, ...args] = input.command
      if (file === undefined) throw new CredproxyError('USAGE', 'no command given', { hint: 'Example: credproxy run -- my-agent' })
      // Nothing to hide from without a sandbox: a 0600 file in the session's own 0700
      // directory reaches every descendant, whoever spawned it (no fd to pass on).
      const secretFile = join(input.socketDir, NONE_SECRET_FILE)
      await writeSessionSecretFile(secretFile, Buffer.from(secret, 'hex'))
      env['CREDPROXY_SECRET_FILE'] = secretFile
      const plan: LaunchPlan = { backend, file, args, env, fds: [] }
      if (input.legacyClients === true) addLegacyClientEnv(plan, env['CREDPROXY_SOCKET'])
      const cleanup = async (): Promise<void> => {
        await unlink(secretFile).catch(() => undefined)
        await shim.remove()
      }
      return { plan, detached: false, cleanup }
    }
    const secretDir = await writeSecretDir(secret)
    const name = `credproxy-${randomBytes(6).toString('hex')}`
    const uid = typeof process.getuid === 'function' ? process.getuid() : 0
    const gid = typeof process.getgid === 'function' ? process.getgid() : 0
    const args = buildContainerArgs(backend, request, { secretDir: secretDir.dir, name, tty, identity: { uid, gid } })
    // The stand-ins' mount points the engine creates in cwd for missing host-executed files.
    const mountpoints = hostExecutedGuards(realPath(input.cwd)).created
    return {
      plan: { backend, file: backend, args, env: engineEnv(input.hostEnv), fds: [], mountpoints },
      detached: true,
      containerName: name,
      engine: backend,
      containerReady: secretDir.ready,
      cleanup: async () => {
        // The same engine env as `run` (DOCKER_HOST, CONTAINERS_CONF ...), not credproxy's own process env.
        spawnSync(backend, ['rm', '-f', name], { stdio: 'ignore', timeout: ENGINE_PROBE_TIMEOUT_MS, env: engineEnv(input.hostEnv) })
        removeEmptyMountpoints(mountpoints)
        await secretDir.remove()
        await shim.remove()
      },
    }
  } catch (error) {
    await shim.remove()
    throw error
  }
}

/** What the docker/podman CLI itself needs from the host env (it never reaches the container). */
function engineEnv(hostEnv: NodeJS.ProcessEnv): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [name, value] of Object.entries(hostEnv)) {
    if (value !== undefined && !name.startsWith('CREDPROXY_')) env[name] = value
  }
  return env
}
