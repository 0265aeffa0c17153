// What a command may touch. Tests pass their own streams and env; only bin.ts
// binds these to the real process.
import type { Readable, Writable } from 'node:stream'
import { styleText } from 'node:util'

export interface CliIO {
  stdin: Readable & { isTTY?: boolean; setRawMode?: (mode: boolean) => unknown }
  stdout: Writable & { isTTY?: boolean }
  stderr: Writable & { isTTY?: boolean }
  env: NodeJS.ProcessEnv
  cwd: string
}

export interface Command {
  name: string
  /** Full --help text, with examples. (The one-line summary lives in the COMMANDS table.) */
  help: string
  /** Help for a subcommand named in args (`credproxy auth login --help`); undefined: use `help`. */
  helpFor?(args: readonly string[]): string | undefined
  run(args: string[], io: CliIO): Promise<number>
}

export function useColor(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv): boolean {
  return stream.isTTY === true && env['NO_COLOR'] === undefined && env['TERM'] !== 'dumb'
}

/**
 * A green ✓ or a red failure mark, colored only when `color` (useColor on the command's own
 * stream) says so; styleText's check of process.stdout is turned off, since a command writes to io.stdout.
 */
export function statusMark(ok: boolean, color: boolean, failText = '✗'): string {
  const text = ok ? '✓' : failText
  return color ? styleText(ok ? 'green' : 'red', text, { validateStream: false }) : text
}

export function writeLine(stream: Writable, line = ''): void {
  stream.write(`${line}\n`)
}
