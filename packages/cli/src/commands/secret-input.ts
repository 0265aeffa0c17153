// Reading a secret for a command: all of stdin when piped, else a prompt that
// does not echo. Never argv: a value there shows in `ps` and shell history.
import { type CliIO } from '../cli-io.js'
import { CredproxyError, UsageError } from '../errors.js'

/** Upper bound on piped input (a token JSON or an API key). */
export const MAX_STDIN_BYTES = 1024 * 1024

export async function readAllStdin(io: CliIO, what: string): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of io.stdin) {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer)
    size += buffer.length
    if (size > MAX_STDIN_BYTES) {
      throw new UsageError(`${what} on stdin is larger than ${MAX_STDIN_BYTES} bytes`, 'Pipe only the value itself.')
    }
    chunks.push(buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}

const ENTER = new Set(['\r', '\n', '\u0004'])
const BACKSPACE = new Set(['\u007f', '\b'])
const CTRL_C = '\u0003'

/** A hidden prompt on a TTY: raw mode, nothing echoed, Ctrl-C cancels. */
export async function promptHidden(io: CliIO, prompt: string): Promise<string> {
  const { stdin } = io
  if (stdin.setRawMode === undefined) {
    throw new CredproxyError('FAILED', 'cannot turn off echo on this terminal', { hint: 'Pipe the value on stdin instead.' })
  }
  io.stderr.write(prompt)
  stdin.setRawMode(true)
  stdin.setEncoding('utf8')
  let value = ''
  try {
    await new Promise<void>((resolve, reject) => {
      const onData = (text: string): void => {
        for (const char of text) {
          if (ENTER.has(char)) {
            stdin.off('data', onData)
            resolve()
            return
          }
          if (char === CTRL_C) {
            stdin.off('data', onData)
            reject(new CredproxyError('CANCELLED', 'cancelled', { hint: 'Nothing was stored.' }))
            return
          }
          if (BACKSPACE.has(char)) value = value.slice(0, -1)
          else value += char
        }
      }
      stdin.on('data', onData)
      stdin.resume()
    })
  } finally {
    stdin.setRawMode(false)
    stdin.pause()
    io.stderr.write('\n')
  }
  return value
}
