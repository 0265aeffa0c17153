// Spawn a prepared sandbox, hand over the secret on its inherited descriptor,
// stream stdio, forward signals and tear everything down. Cleanup guarantees:
// dev-docs/sandbox.md "Cleanup".
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process'
import type { Writable } from 'node:stream'
import { writeLine, type CliIO } from '../cli-io.js'
import { inspectContainerPid, watchContainerPid, type ContainerPidLookup } from './container.js'
import { exitCodeOf } from './exit-code.js'
import { closeInheritedFdsOnExec, closeQuietly, openSealedData } from './inherited-fd.js'
import { descendants, isAlive } from './process-tree.js'
import type { PreparedLaunch } from './select.js'
import { CredproxyError } from '../errors.js'

/** How long a sandbox may take to exit after SIGTERM before everything in it gets SIGKILL. */
export const TERMINATE_GRACE_MS = 3_000
/** Stands in for "no sandbox process yet": no peer descends from it, so every peer is refused until launch. */
export const NO_SANDBOX_PID = 0

export interface SandboxExit {
  /** The command's exit code, or 128 + signal number when it was killed. */
  code: number
  signal: NodeJS.Signals | null
}

export interface SandboxProcess {
  pid: number
  /** Host pids the peer check accepts (the sandbox and, through ancestry, everything inside). */
  sandboxPids(): number[]
  forward(signal: NodeJS.Signals): void
  exited: Promise<SandboxExit>
  /** SIGTERM, then SIGKILL after TERMINATE_GRACE_MS; resolves once the sandbox is gone. */
  terminate(): Promise<SandboxExit>
  /** Containers only: the container init's host pid once polling found it, null if it never ran. */
  containerPid?: Promise<number | null>
}

export interface SpawnOptions {
  /** Replaces `docker|podman inspect` (tests: no engine runs on the test machine). */
  containerPidLookup?: ContainerPidLookup
  containerPidPoll?: { tries?: number; intervalMs?: number }
}

function hasFd(stream: unknown, fd: number): boolean {
  return (stream as { fd?: unknown }).fd === fd
}


export function spawnSandbox(prepared: PreparedLaunch, io: CliIO, options: SpawnOptions = {}): SandboxProcess {
  const { plan } = prepared
  // The real process streams are inherited (TTY stays a TTY); test streams are piped.
  if (!closeInheritedFdsOnExec()) {
    throw new CredproxyError(
      'UNAVAILABLE',
      'credproxy cannot mark its inherited file descriptors close-on-exec, so they would leak into the sandbox',
      { hint: 'Reinstall credproxy so its koffi dependency loads (npm install), on Linux or macOS.' },
    )
  }
  const inherited = plan.fds.map((data) => openSealedData(data))
  const stdio: StdioOptions = [
    hasFd(io.stdin, 0) ? 'inherit' : 'pipe',
    hasFd(io.stdout, 1) ? 'inherit' : 'pipe',
    hasFd(io.stderr, 2) ? 'inherit' : 'pipe',
    ...inherited,
  ]
  let child: ChildProcess
  try {
    child = spawn(plan.file, plan.args, { env: plan.env, stdio, detached: prepared.detached, cwd: io.cwd })
  } finally {
    // The child holds its own copies now; ours must not linger in this process.
    for (const fd of inherited) closeQuietly(fd)
  }
  const exited = new Promise<SandboxExit>((resolve) => {
    child.once('error', () => resolve({ code: 127, signal: null }))
    child.once('close', (code, signal) => resolve({ code: exitCodeOf(code, signal), signal }))
  })
  if (child.stdin !== null) {
    child.stdin.on('error', () => undefined)
    io.stdin.pipe(child.stdin)
  }
  pipeOut(child.stdout, io.stdout)
  pipeOut(child.stderr, io.stderr)
  const pid = child.pid ?? NO_SANDBOX_PID
  let done = false
  const { engine, containerName } = prepared
  // Polled from spawn on and cached: the peer check runs on every accept and must not block the loop.
  const container =
    engine === undefined || containerName === undefined
      ? null
      : watchContainerPid(options.containerPidLookup ?? (() => inspectContainerPid(engine, containerName, plan.env)), options.containerPidPoll)
  void container?.found.then(async (found) => {
    // The container may be gone already (its secret dir with it): nothing left to tell.
    if (found !== null) await prepared.containerReady?.().catch(() => undefined)
    if (found === null && !done) {
      writeLine(io.stderr, `credproxy: the ${engine ?? ''} container ${containerName ?? ''} never reported a running pid: the broker refuses its connections`)
    }
  })
  const sandboxPids = (): number[] => [container === null ? pid : (container.current() ?? NO_SANDBOX_PID)]
  void exited.then(() => {
    done = true
    container?.stop()
  })

  const forward = (signal: NodeJS.Signals): void => {
    if (done || pid === NO_SANDBOX_PID) return
    if (plan.backend === 'bwrap') {
      // bwrap forwards no signal; its inner init leads the sandbox's process group.
      const inner = descendants(pid)[0]
      if (inner !== undefined) {
        trySignal(-inner, signal)
        return
      }
    }
    trySignal(pid, signal)
  }

  const terminate = async (): Promise<SandboxExit> => {
    if (!done && pid !== NO_SANDBOX_PID) {
      forward('SIGTERM')
      const timer = setTimeout(() => killTree(pid), TERMINATE_GRACE_MS)
      try {
        return await exited
      } finally {
        clearTimeout(timer)
      }
    }
    return exited
  }

  return { pid, sandboxPids, forward, exited, terminate, ...(container === null ? {} : { containerPid: container.found }) }
}

function pipeOut(from: NodeJS.ReadableStream | null, to: Writable): void {
  if (from === null) return
  from.on('data', (chunk: Buffer) => to.write(chunk))
}

function trySignal(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal)
  } catch {
    // Already gone.
  }
}

/** SIGKILL a process and every descendant, children first is not needed: all at once. */
export function killTree(pid: number): void {
  const tree = descendants(pid)
  trySignal(pid, 'SIGKILL')
  for (const p of tree) if (isAlive(p)) trySignal(p, 'SIGKILL')
}
