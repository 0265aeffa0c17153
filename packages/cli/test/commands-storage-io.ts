// In-memory CliIO for running `main(argv, io)` in-process in the key/auth command tests.
import { PassThrough, Readable, Writable } from 'node:stream'
import type { CliIO } from '../src/cli-io.js'

export interface CapturedIO {
  io: CliIO
  stdout(): string
  stderr(): string
}

function sink(chunks: string[], isTTY: boolean): Writable & { isTTY?: boolean } {
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      chunks.push(chunk.toString())
      callback()
    },
  }) as Writable & { isTTY?: boolean }
  stream.isTTY = isTTY
  return stream
}

/** stdin is piped text, or (tty) a fake terminal that types `typed` once raw mode is on. */
export function captureIO(env: NodeJS.ProcessEnv, stdin: { piped: string } | { tty: string; rawModes?: boolean[] }): CapturedIO {
  const out: string[] = []
  const err: string[] = []
  let input: CliIO['stdin']
  if ('piped' in stdin) {
    input = Readable.from(stdin.piped === '' ? [] : [Buffer.from(stdin.piped)])
  } else {
    const tty = new PassThrough() as PassThrough & { isTTY?: boolean; setRawMode?: (mode: boolean) => unknown }
    tty.isTTY = true
    tty.setRawMode = (mode: boolean) => {
      stdin.rawModes?.push(mode)
      if (mode) setImmediate(() => tty.write(stdin.tty))
      return tty
    }
    input = tty
  }
  return {
    io: { stdin: input, stdout: sink(out, false), stderr: sink(err, false), env, cwd: '/' },
    stdout: () => out.join(''),
    stderr: () => err.join(''),
  }
}
