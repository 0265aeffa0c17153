// argv -> exit code. Everything the CLI does goes through main(), so tests run it
// in-process with their own streams; bin.ts is the only caller that binds process.
// Types only: `credproxy --version` and `--help` load no socket client (it is imported
// where a command or an error needs it, by which time the command has loaded it anyway).
import type { ErrorCode, ProxyError } from '@credproxy/core/client'
import { writeLine, type CliIO } from './cli-io.js'
import { COMMANDS, findCommand } from './commands/index.js'
import { findHelpTopic } from './commands/help-topics.js'
import { EXIT } from './exit-codes.js'
import { escapeUntrusted } from './escape.js'
import { CredproxyError, type CredproxyErrorCode } from './errors.js'
import { closest } from './suggest.js'

export const VERSION = '0.1.0'

/** The command list, from the table alone: no command module is imported for it. */
export function globalHelp(): string {
  return [
    'credproxy: keep credentials on the host while a CLI runs in a sandbox.',
    '',
    'Usage: credproxy <command> [options]',
    '',
    'Commands:',
    ...Object.entries(COMMANDS).map(([name, entry]) => `  ${name.padEnd(10)} ${entry.summary}`),
    '',
    'Options:',
    '  --help, -h          this help',
    '  --version, -v, -V   print the version (also: credproxy version)',
    '',
    'Run `credproxy <command> --help` (or `credproxy help <command>`) for options and examples.',
    'OAuth providers (providers.json): `credproxy help oauth`.',
    'Exit codes: 0 ok, 1 failure, 2 usage, 3 not found, 4 not granted or refused,',
    '            5 login required, 6 broker/keyring/sandbox unavailable;',
    '            run and exec exit with the command\'s own code (128+N on signal N).',
  ].join('\n')
}

const GLOBAL_OPTIONS = ['--help', '-h', '--version', '-v', '-V'] as const

function unknownCommand(name: string, io: CliIO): number {
  const shown = escapeUntrusted(name.slice(0, 64))
  if (name.startsWith('-')) {
    const guess = closest(name, GLOBAL_OPTIONS.filter((o) => o.startsWith('--')))
    writeLine(io.stderr, `credproxy: unknown option ${shown}`)
    writeLine(io.stderr, `  ${guess === undefined ? '' : `Did you mean ${guess}? `}Run \`credproxy --help\` to see the commands and options.`)
    return EXIT.USAGE
  }
  const guess = closest(name, [...Object.keys(COMMANDS), 'help', 'version'])
  writeLine(io.stderr, `credproxy: unknown command '${shown}'`)
  writeLine(io.stderr, `  ${guess === undefined ? '' : `Did you mean \`credproxy ${guess}\`? `}Run \`credproxy --help\` to see the commands.`)
  return EXIT.USAGE
}

const PROXY_EXIT: Partial<Record<ErrorCode, number>> = {
  NOT_FOUND: EXIT.NOT_FOUND,
  PROVIDER_NOT_FOUND: EXIT.NOT_FOUND,
  PROVIDER_NOT_CONFIGURED: EXIT.NOT_FOUND,
  REFRESH_NOT_AVAILABLE: EXIT.AUTH_REQUIRED,
  NOT_GRANTED: EXIT.DENIED,
  UNAUTHORIZED: EXIT.DENIED,
  FORBIDDEN: EXIT.DENIED,
  REAUTH_REQUIRED: EXIT.AUTH_REQUIRED,
  ACCESS_DENIED: EXIT.AUTH_REQUIRED,
  SESSION_EXPIRED: EXIT.AUTH_REQUIRED,
  CONNECTION_FAILED: EXIT.UNAVAILABLE,
  TIMEOUT: EXIT.UNAVAILABLE,
  SERVER_UNVERIFIED: EXIT.UNAVAILABLE,
} as Partial<Record<ErrorCode, number>>

/** The next step for codes whose fixed wire message cannot name one. */
const PROXY_HINT: Partial<Record<string, string>> = {
  NOT_GRANTED: 'The host decides: restart with `credproxy run --grant PROVIDER` / `--grant-key NAME`, or run `credproxy grant --session ID ...` on the host.',
  // A missing capability is NOT_GRANTED; FORBIDDEN is a peer the broker refused (or key set/delete inside a sandbox, whose message names the command).
  FORBIDDEN: 'The broker refused this process (wrong user, or not inside the sandbox it launched): run the command inside that sandbox, or start one with `credproxy run`.',
  CONNECTION_FAILED: 'Is the `credproxy run` or `credproxy serve` that set CREDPROXY_SOCKET still running? On the host, unset CREDPROXY_SOCKET to use the host store.',
  TIMEOUT: 'The broker did not answer in time; check `credproxy sessions` on the host.',
  SERVER_UNVERIFIED: 'The socket is not held by your credproxy session: start the command again with `credproxy run`.',
  RATE_LIMITED: 'Too many requests: wait a moment and try again.',
  RESOURCE_EXHAUSTED: 'The broker is at a limit: wait a moment and try again.',
}

export function exitCodeForProxyError(error: ProxyError): number {
  return PROXY_EXIT[error.code] ?? EXIT.FAILURE
}

/** The exit code of each host error code: this table is the only place a lower layer's error becomes an exit code. */
const HOST_EXIT: Record<CredproxyErrorCode, number> = {
  USAGE: EXIT.USAGE,
  NOT_FOUND: EXIT.NOT_FOUND,
  DENIED: EXIT.DENIED,
  AUTH_REQUIRED: EXIT.AUTH_REQUIRED,
  UNAVAILABLE: EXIT.UNAVAILABLE,
  KEYRING_UNAVAILABLE: EXIT.UNAVAILABLE,
  // What a shell prints for a command it cannot find (`exec`).
  COMMAND_NOT_FOUND: 127,
  INVALID_FILE: EXIT.FAILURE,
  ENVELOPE_INVALID: EXIT.FAILURE,
  // 128 + SIGINT, as a shell reports a command stopped by Ctrl-C.
  CANCELLED: 130,
  FAILED: EXIT.FAILURE,
}

export function exitCodeFor(error: CredproxyError): number {
  return HOST_EXIT[error.code]
}

export async function main(argv: readonly string[], io: CliIO): Promise<number> {
  const [name, ...args] = argv
  try {
    if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
      const [topic, ...rest] = name === 'help' ? args : []
      if (topic === undefined) {
        writeLine(io.stdout, globalHelp())
        return EXIT.OK
      }
      const text = findCommand(topic) === undefined ? findHelpTopic(topic) : undefined
      if (text !== undefined) {
        writeLine(io.stdout, text.trimEnd())
        return EXIT.OK
      }
      const entry = findCommand(topic)
      if (entry === undefined) return unknownCommand(topic, io)
      const command = await entry.load()
      writeLine(io.stdout, command.helpFor?.(rest) ?? command.help)
      return EXIT.OK
    }
    if (name === '--version' || name === '-V' || name === '-v' || name === 'version') {
      writeLine(io.stdout, VERSION)
      return EXIT.OK
    }
    const entry = findCommand(name)
    if (entry === undefined) return unknownCommand(name, io)
    // Only a --help before `--` is ours; after it, it belongs to the wrapped command.
    const before = args.includes('--') ? args.slice(0, args.indexOf('--')) : args
    const helpAsked = before.includes('--help') || before.includes('-h')
    if (entry.hostOnly === true && !helpAsked && (await import('@credproxy/core/client')).isProxyMode(io.env)) {
      // Inside, the host's registry and log are hidden: an empty answer would mislead.
      throw new CredproxyError(
        'USAGE',
        `\`credproxy ${name}\` works on the host only, not inside a sandbox (CREDPROXY_SOCKET is set)`,
        { hint: `Run it in a terminal on the host${name === 'serve' ? ', or unset CREDPROXY_SOCKET' : ''}.` },
      )
    }
    const command = await entry.load()
    if (helpAsked) {
      writeLine(io.stdout, command.helpFor?.(before.filter((arg) => arg !== '--help' && arg !== '-h')) ?? command.help)
      return EXIT.OK
    }
    return await command.run(args, io)
  } catch (error) {
    return await reportError(error, io)
  }
}

export async function reportError(error: unknown, io: CliIO): Promise<number> {
  const { ProxyError } = await import('@credproxy/core/client')
  if (error instanceof CredproxyError) {
    writeLine(io.stderr, `credproxy: ${escapeUntrusted(error.message)}`)
    if (error.hint !== undefined) writeLine(io.stderr, `  ${error.hint}`)
    return exitCodeFor(error)
  }
  if (error instanceof ProxyError) {
    // A broker's or provider's message may carry control characters: shown escaped.
    writeLine(io.stderr, `credproxy: ${escapeUntrusted(error.message)} (${error.code})`)
    const hint = PROXY_HINT[error.code]
    // Newer brokers put the exact next command in the message itself.
    if (hint !== undefined && !error.message.includes('`credproxy ')) writeLine(io.stderr, `  ${hint}`)
    return exitCodeForProxyError(error)
  }
  const message = error instanceof Error ? error.message : String(error)
  writeLine(io.stderr, `credproxy: unexpected error: ${escapeUntrusted(message)}`)
  if (io.env['CREDPROXY_DEBUG'] !== undefined && error instanceof Error && error.stack !== undefined) {
    writeLine(io.stderr, error.stack)
  } else {
    writeLine(io.stderr, '  Set CREDPROXY_DEBUG=1 for a stack trace, and please report it.')
  }
  return EXIT.FAILURE
}
