// Runs one credential source on the host and parses its output. A command runs
// without a shell, stdin /dev/null, a clean environment, in its own process group
// (killed whole on timeout), with stdout capped; stderr goes to the host log only.
import { spawn } from 'node:child_process'
import { open } from 'node:fs/promises'
import { isAbsolute } from 'node:path'
import * as z from 'zod'
import { safeParseJson } from '../json-file.js'
import { findOnPath } from '../system-deps.js'
import { programName, type SourceConfig } from './sources-config.js'

/** Largest stdout (and file) a source may produce. */
export const MAX_SOURCE_OUTPUT_BYTES = 1_048_576
/** Host log lines keep at most this much of a command's stderr. */
const MAX_STDERR_LOG_BYTES = 4096
/** Grace between SIGTERM and SIGKILL for a timed-out process group. */
const KILL_GRACE_MS = 500

/** A value read from a source; expiresAt (epoch ms) when the source declared one. */
export interface SourceValue {
  value: string
  expiresAt?: number
}

/** A source that produced no value; `message` is for the host log and doctor, never the sandbox. */
export class SourceError extends Error {
  override name = 'SourceError'
  constructor(
    message: string,
    readonly exitCode: number | null = null,
    /** The command's stderr (start of it): host log and doctor only. */
    readonly stderr = '',
  ) {
    super(message)
  }
}

/** One command run as the audit log records it (no value, no arguments). */
export interface SourceRun {
  name: string
  kind: 'key' | 'token'
  program: string
  exitCode: number | null
  durationMs: number
  ok: boolean
}

export interface RunSourceOptions {
  /** The host environment (PATH lookup, pass_env, env sources). */
  env: NodeJS.ProcessEnv
  now?: () => number
  /** Host log; never receives a value. */
  log?: (line: string) => void
  /** Aborted when the session closes: a running command's process group is killed. */
  signal?: AbortSignal
}

const JsonOutputSchema = z.looseObject({
  value: z.string().min(1),
  /** Epoch seconds or an ISO date. */
  expires_at: z.union([z.number().finite(), z.string().min(1)]).optional(),
  expires_in: z.number().finite().optional(),
})

/** Read a file or host variable, or run the command; throws SourceError. */
export async function readSource(source: SourceConfig, options: RunSourceOptions): Promise<SourceValue> {
  const now = options.now ?? Date.now
  let output: string
  if (source.env !== undefined) {
    output = options.env[source.env] ?? ''
    if (output === '') throw new SourceError(`host variable ${source.env} is not set`)
  } else if (source.file !== undefined) {
    output = await readCapped(source.file)
  } else {
    output = await runCommand(source, options)
  }
  return parseOutput(source, output, now())
}

export function parseOutput(source: SourceConfig, output: string, nowMs: number): SourceValue {
  if (source.output === 'raw') {
    const value = output.trim()
    if (value === '') throw new SourceError('the source printed nothing')
    return { value }
  }
  // The output may be the secret itself: the message gives the position or the field, never the text.
  const parsed = safeParseJson(output, JsonOutputSchema)
  if (!parsed.ok) {
    const { problem } = parsed
    throw new SourceError(problem.kind === 'syntax' ? 'the source did not print JSON (output "json")' : `the source's JSON: invalid field ${problem.field || '(top level)'}`)
  }
  const { value, expires_at: at, expires_in: inSeconds } = parsed.value
  let expiresAt: number | undefined
  if (typeof at === 'number') expiresAt = at * 1000
  else if (typeof at === 'string') {
    expiresAt = Date.parse(at)
    if (Number.isNaN(expiresAt)) throw new SourceError("the source's JSON: expires_at is not a date")
  } else if (inSeconds !== undefined) expiresAt = nowMs + inSeconds * 1000
  if (expiresAt !== undefined && expiresAt <= nowMs) throw new SourceError('the source printed a value that has already expired')
  return expiresAt === undefined ? { value } : { value, expiresAt }
}

async function readCapped(path: string): Promise<string> {
  let handle
  try {
    handle = await open(path, 'r')
  } catch (error) {
    throw new SourceError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`)
  }
  try {
    const buffer = Buffer.alloc(MAX_SOURCE_OUTPUT_BYTES + 1)
    let total = 0
    for (;;) {
      const { bytesRead } = await handle.read(buffer, total, buffer.length - total, null)
      if (bytesRead === 0) break
      total += bytesRead
      if (total > MAX_SOURCE_OUTPUT_BYTES) throw new SourceError(`${path} is larger than ${MAX_SOURCE_OUTPUT_BYTES} bytes`)
    }
    return buffer.subarray(0, total).toString('utf8')
  } finally {
    await handle.close()
  }
}

/** argv[0] as the host resolves it: absolute, or found on the host PATH. */
export function resolveProgram(argv0: string, env: NodeJS.ProcessEnv): string {
  if (isAbsolute(argv0)) return argv0
  if (argv0.includes('/')) throw new SourceError(`${argv0}: give an absolute path or a program name looked up on PATH`)
  const found = findOnPath(argv0, env)
  if (found === null) throw new SourceError(`${argv0} is not on the host PATH`)
  return found
}

/** The command's environment: PATH, HOME, LANG and the variables the source names. */
export function commandEnv(source: SourceConfig, env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {}
  for (const name of ['PATH', 'HOME', 'LANG', ...source.pass_env]) {
    const value = env[name]
    if (value !== undefined) out[name] = value
  }
  return out
}

function runCommand(source: SourceConfig, options: RunSourceOptions): Promise<string> {
  const argv = source.command ?? []
  const program = resolveProgram(argv[0] ?? '', options.env)
  const label = `source ${source.name} (${programName(program)})`
  return new Promise((resolve, reject) => {
    const child = spawn(program, argv.slice(1), {
      env: commandEnv(source, options.env),
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group: a timeout kills whatever it started too.
      detached: true,
      shell: false,
    })
    const chunks: Buffer[] = []
    let size = 0
    let stderr = ''
    let failure: SourceError | null = null
    const killGroup = (signal: NodeJS.Signals): void => {
      if (child.pid === undefined) return
      try {
        process.kill(-child.pid, signal)
      } catch {
        // already gone
      }
    }
    const stop = (error: SourceError): void => {
      failure ??= error
      killGroup('SIGTERM')
      setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS).unref()
    }
    const timer = setTimeout(() => stop(new SourceError(`${label} timed out after ${source.timeout_ms} ms (killed)`)), source.timeout_ms)
    // The command runs in a session of its own: without this it would outlive a closed credproxy session.
    const onAbort = (): void => stop(new SourceError(`${label} stopped: the session closed`))
    options.signal?.addEventListener('abort', onAbort, { once: true })
    child.stdout.on('data', (chunk: Buffer) => {
      if (failure !== null) return
      size += chunk.length
      if (size > MAX_SOURCE_OUTPUT_BYTES) {
        chunks.length = 0
        stop(new SourceError(`${label} printed more than ${MAX_SOURCE_OUTPUT_BYTES} bytes (killed)`))
        return
      }
      chunks.push(chunk)
    })
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < MAX_STDERR_LOG_BYTES) stderr += chunk.toString('utf8').slice(0, MAX_STDERR_LOG_BYTES - stderr.length)
    })
    child.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      options.signal?.removeEventListener('abort', onAbort)
      reject(new SourceError(`${label} could not start: ${error.code ?? error.message}`))
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      options.signal?.removeEventListener('abort', onAbort)
      // Whatever it left running in its group goes too.
      killGroup('SIGKILL')
      // One short line: enough to diagnose ("not signed in"), little room for anything else.
      const firstLine = stderr.trim().split('\n')[0]?.slice(0, 200) ?? ''
      if (firstLine !== '') options.log?.(`${label} stderr: ${firstLine}`)
      if (failure !== null) return reject(failure)
      if (code !== 0) return reject(new SourceError(`${label} exited with ${code ?? signal ?? 'an error'}`, code, stderr.trim()))
      resolve(Buffer.concat(chunks).toString('utf8'))
    })
  })
}
