// --sandbox auto|bwrap|docker|podman|none: pick a backend that works here, say
// which on stderr, and turn a request into a ready-to-spawn LaunchPlan.
import { randomBytes } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import type { Writable } from 'node:stream'
import { CliError, writeLine } from '../cli-io.js'
import { EXIT } from '../exit-codes.js'
import { bwrapLaunchPlan, hostExecutedGuards, probeBwrap, realPath, removeEmptyMountpoints } from './bwrap.js'
import { buildContainerArgs, ENGINE_PROBE_TIMEOUT_MS, probeEngine, writeSecretDir, type Engine } from './container.js'
import { buildSandboxEnv } from './sandbox-env.js'
import { createShim, nodeBinary, nodeFiles, runtimeDirs } from './shim.js'
import { SANDBOX_CHOICES, type LaunchPlan, type SandboxChoice, type SandboxName, type SandboxRequest } from './types.js'

export const NONE_WARNING =
  'credproxy: WARNING: --sandbox none: the command runs WITHOUT isolation and can read every file and credential you can'

export function parseSandboxChoice(value: string | undefined): SandboxChoice {
  const choice = value ?? 'auto'
  if (!(SANDBOX_CHOICES as readonly string[]).includes(choice)) {
    throw new CliError(
      `unknown sandbox '${choice}'`,
      `Use one of: ${SANDBOX_CHOICES.join(', ')} (e.g. credproxy run --sandbox bwrap -- CMD).`,
      EXIT.USAGE,
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
      throw new CliError(`the ${choice} sandbox is not available: ${problem}`, 'Install or start it, or pick another with --sandbox.', EXIT.UNAVAILABLE)
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
  throw new CliError(
    `no sandbox backend works on this machine:\n${problems.join('\n')}`,
    'Install bubblewrap (Linux) or start Docker/Podman; `--sandbox none` runs without isolation.',
    EXIT.UNAVAILABLE,
  )
}

export interface PreparedLaunch {
  plan: LaunchPlan
  /** Own process group, so terminal signals reach only credproxy, which forwards them. */
  detached: boolean
  containerName?: string
  engine?: Engine
  /** Remove the shim and any secret file; remove the container if it still exists. */
  cleanup(): Promise<void>
}

export type LaunchInput = Omit<SandboxRequest, 'shimDir' | 'runtimeDirs' | 'nodeFiles'>

export async function prepareLaunch(
  backend: SandboxName,
  input: LaunchInput,
  secret: string,
  tty: boolean,
): Promise<PreparedLaunch> {
  const container = backend === 'docker' || backend === 'podman'
  // The real binary: bwrap binds that file, not a symlink to it in a hidden dir.
  const shim = await createShim(container ? 'node' : nodeBinary())
  const request: SandboxRequest = { ...input, shimDir: shim.dir, runtimeDirs: runtimeDirs(), nodeFiles: container ? [] : nodeFiles() }
  try {
    if (backend === 'bwrap') {
      const plan = bwrapLaunchPlan(request, secret)
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
      const sandboxEnv = buildSandboxEnv(input.hostEnv, { home: input.hostEnv['HOME'] ?? '/', socketName: input.socketName })
      env['PATH'] = `${shim.dir}:${input.hostEnv['PATH'] ?? ''}`
      env['CREDPROXY_SOCKET'] = `${input.socketDir}/${input.socketName}`
      env['CREDPROXY_SECRET_FD'] = sandboxEnv['CREDPROXY_SECRET_FD'] ?? '3'
      for (const [name, value] of Object.entries(input.egress?.env ?? {})) {
        // The user's own NODE_OPTIONS stay, after the proxy preload.
        env[name] = name === 'NODE_OPTIONS' && env[name] !== undefined ? `${value} ${env[name]}` : value
      }
      const [file, ...args] = input.command
      if (file === undefined) throw new CliError('no command given', 'Example: credproxy run -- my-agent', EXIT.USAGE)
      return {
        plan: { backend, file, args, env, fds: [Buffer.from(secret, 'utf8')] },
        detached: false,
        cleanup: shim.remove,
      }
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
      cleanup: async () => {
        spawnSync(backend, ['rm', '-f', name], { stdio: 'ignore', timeout: ENGINE_PROBE_TIMEOUT_MS })
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
