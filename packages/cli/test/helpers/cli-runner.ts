// Running `main(argv, io)` in-process with in-memory streams, and the fresh host
// state (CREDPROXY_HOME, cwd, file store) the command tests run it against.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Readable, Writable } from 'node:stream'
import { main } from '../../src/cli.js'
import type { CliIO } from '../../src/cli-io.js'
import { openHostStores } from '../../src/storage/index.js'
import type { HostStores } from '../../src/storage/types.js'

/**
 * What the command reads: nothing (an ended stream), piped text, or a fake
 * terminal that types `tty` once raw mode is on (each mode change is pushed to rawModes).
 */
export type CliStdin = string | { tty: string; rawModes?: boolean[] }

export interface CliOptions {
  env: NodeJS.ProcessEnv
  /** Default: process.cwd(). */
  cwd?: string
  stdin?: CliStdin
  /** Called after each stdout write with all stdout so far. */
  onStdout?: (stdout: string) => void
}

export interface CliResult {
  code: number
  stdout: string
  stderr: string
}

export interface RunningCli {
  stdout(): string
  stderr(): string
  exit: Promise<number>
}

function sink(chunks: string[], onWrite?: () => void): Writable & { isTTY?: boolean } {
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      chunks.push(chunk.toString())
      onWrite?.()
      callback()
    },
  }) as Writable & { isTTY?: boolean }
  stream.isTTY = false
  return stream
}

function input(stdin: CliStdin | undefined): CliIO['stdin'] {
  if (stdin === undefined) {
    const empty = new PassThrough()
    empty.end()
    return empty
  }
  if (typeof stdin === 'string') return Readable.from(stdin === '' ? [] : [Buffer.from(stdin)])
  const tty = new PassThrough() as PassThrough & { isTTY?: boolean; setRawMode?: (mode: boolean) => unknown }
  tty.isTTY = true
  tty.setRawMode = (mode: boolean) => {
    stdin.rawModes?.push(mode)
    if (mode) setImmediate(() => tty.write(stdin.tty))
    return tty
  }
  return tty
}

/** Starts `credproxy argv` in-process; its output can be read while it runs. */
export function startCli(argv: string[], options: CliOptions): RunningCli {
  const out: string[] = []
  const err: string[] = []
  const stdout = (): string => out.join('')
  const onStdout = options.onStdout
  const io: CliIO = {
    stdin: input(options.stdin),
    stdout: sink(out, onStdout === undefined ? undefined : () => onStdout(stdout())),
    stderr: sink(err),
    env: options.env,
    cwd: options.cwd ?? process.cwd(),
  }
  return { stdout, stderr: () => err.join(''), exit: main(argv, io) }
}

/** Runs `credproxy argv` in-process to completion: its exit code and everything it printed. */
export async function runCli(argv: string[], options: CliOptions): Promise<CliResult> {
  const running = startCli(argv, options)
  const code = await running.exit
  return { code, stdout: running.stdout(), stderr: running.stderr() }
}

/** A minimal host env around CREDPROXY_HOME=home: the keyring is off, nothing else of the runner's env. */
export function cliEnv(home: string): NodeJS.ProcessEnv {
  return { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/root', CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' }
}

export interface CliHome {
  env: NodeJS.ProcessEnv
  home: string
  cwd: string
}

const made: string[] = []

/**
 * A fresh CREDPROXY_HOME (file store, keyring off) and working directory, named
 * `<prefix>…` and `<prefix>cwd-…`; seed fills the store. Remove with removeCliHomes().
 */
export async function makeCliHome(prefix: string, seed?: (stores: HostStores) => Promise<unknown>, extraEnv: NodeJS.ProcessEnv = {}): Promise<CliHome> {
  const home = mkdtempSync(join(tmpdir(), prefix))
  const cwd = mkdtempSync(join(tmpdir(), `${prefix}cwd-`))
  made.push(home, cwd)
  const env = { ...cliEnv(home), ...extraEnv }
  if (seed !== undefined) await seed(await openHostStores({ env, log: () => undefined }))
  return { env, home, cwd }
}

/** Removes every directory makeCliHome made so far (for afterEach / afterAll). */
export function removeCliHomes(): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true })
}
