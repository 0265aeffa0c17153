// `credproxy exec --key ENV=NAME... -- COMMAND`: run COMMAND with API key NAME in
// env var ENV of the child only (never on an argv). Inside a sandbox the keys come
// through the broker socket, on the host from the host store (commands/stores.ts).
import { spawn } from 'node:child_process'
import { createProviderKeyStorage, isKeyName, isProxyMode, type ProviderKeyStorage } from '@credproxy/core/client'
import { type CliIO, type Command } from '../cli-io.js'
import { exitCodeOf } from '../sandbox/exit-code.js'
import { parseOptions, splitAtDashDash } from './parse-options.js'
import { openCommandStores } from './stores.js'
import { CredproxyError, UsageError } from '../errors.js'

/** Env var names we set for a child: the POSIX portable form. */
const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/

const help = `Usage: credproxy exec --key ENV=NAME... -- COMMAND [ARGS...]

Run COMMAND with the API key NAME in its environment variable ENV. The key is
set for that child only: never on a command line, never in credproxy's own env.
Works the same on the host (host store) and inside \`credproxy run\` (broker).

Options:
  --key ENV=NAME   put key NAME into ENV (repeatable)

Exit code: COMMAND's own (128+N when killed by signal N); 3 when a key is
missing, 4 when the sandbox was not granted it.

Examples:
  credproxy exec --key OPENAI_API_KEY=OPENAI_API_KEY -- my-agent
  credproxy exec --key GH_TOKEN=GITHUB_TOKEN --key NPM_TOKEN=npm -- npm publish`

export interface KeyMapping {
  env: string
  name: string
}

export function parseExecArgs(args: readonly string[]): { keys: KeyMapping[]; command: string[] } {
  const example = 'Example: credproxy exec --key K=K -- env'
  const { flags, command } = splitAtDashDash(args, { missingDashDash: example, emptyCommand: example })
  const values = parseOptions('exec', flags, { key: { type: 'string', multiple: true } })
  const keys = (values.key ?? []).map((text): KeyMapping => {
    const at = text.indexOf('=')
    const env = at === -1 ? text : text.slice(0, at)
    const name = at === -1 ? text : text.slice(at + 1)
    if (!ENV_NAME_PATTERN.test(env) || !isKeyName(name)) {
      throw new UsageError(`invalid --key '${text}'`, 'Use --key ENV=NAME, e.g. --key OPENAI_API_KEY=OPENAI_API_KEY.')
    }
    return { env, name }
  })
  if (keys.length === 0) throw new UsageError('no --key given', 'Example: credproxy exec --key OPENAI_API_KEY=OPENAI_API_KEY -- my-agent')
  return { keys, command }
}

export const command: Command = {
  name: 'exec',
  help,
  async run(args, io) {
    const { keys, command: argv } = parseExecArgs(args)
    const keyStorage = await openKeyStorage(io)
    const childEnv: NodeJS.ProcessEnv = { ...io.env }
    for (const { env, name } of keys) {
      const value = await keyStorage.getKey(name)
      if (value === null) {
        const where = isProxyMode(io.env) ? 'on the host (the broker has no such key)' : 'in the host store'
        throw new CredproxyError('NOT_FOUND', `API key ${name} is not stored ${where}`, { hint: `Store it on the host: credproxy key set ${name}` })
      }
      childEnv[env] = value
    }
    return spawnAndWait(argv, childEnv, io)
  },
}

/** The broker inside a sandbox, the host store outside. */
async function openKeyStorage(io: CliIO): Promise<ProviderKeyStorage> {
  if (isProxyMode(io.env)) return createProviderKeyStorage({ env: io.env })
  return (await openCommandStores(io)).keys
}

/** Run the child on the caller's stdio; resolves with its exit code. */
async function spawnAndWait(argv: string[], env: NodeJS.ProcessEnv, io: CliIO): Promise<number> {
  const [file, ...rest] = argv as [string, ...string[]]
  const pipeStd = (stream: unknown, fd: number): 'inherit' | 'pipe' => ((stream as { fd?: unknown }).fd === fd ? 'inherit' : 'pipe')
  const child = spawn(file, rest, {
    env,
    cwd: io.cwd,
    stdio: [pipeStd(io.stdin, 0), pipeStd(io.stdout, 1), pipeStd(io.stderr, 2)],
  })
  if (child.stdin !== null) {
    child.stdin.on('error', () => undefined)
    io.stdin.pipe(child.stdin)
  }
  child.stdout?.on('data', (chunk: Buffer) => io.stdout.write(chunk))
  child.stderr?.on('data', (chunk: Buffer) => io.stderr.write(chunk))
  // The terminal delivers Ctrl-C to the child too; other signals are passed on.
  const forward = (signal: NodeJS.Signals) => () => child.kill(signal)
  const handlers = (['SIGTERM', 'SIGHUP'] as const).map((s) => [s, forward(s)] as const)
  for (const [signal, handler] of handlers) process.on(signal, handler)
  const onInt = (): void => undefined
  process.on('SIGINT', onInt)
  try {
    return await new Promise<number>((resolve, reject) => {
      child.once('error', (error: NodeJS.ErrnoException) =>
        reject(
          error.code === 'ENOENT'
            ? new CredproxyError('COMMAND_NOT_FOUND', `command not found: ${file}`, { hint: 'Check the command name and PATH.' })
            : error,
        ),
      )
      child.once('close', (code, signal) => resolve(exitCodeOf(code, signal)))
    })
  } finally {
    for (const [signal, handler] of handlers) process.off(signal, handler)
    process.off('SIGINT', onInt)
    if (child.stdin !== null) io.stdin.unpipe(child.stdin)
  }
}
