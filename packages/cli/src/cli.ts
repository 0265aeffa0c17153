// argv -> exit code. Everything the CLI does goes through main(), so tests run it
// in-process with their own streams; bin.ts is the only caller that binds process.
import { ProxyError, type ErrorCode } from '@credproxy/core'
import { CliError, writeLine, type CliIO } from './cli-io.js'
import { COMMANDS } from './commands/index.js'
import { EXIT } from './exit-codes.js'

export const VERSION = '0.1.0'

function globalHelp(): string {
  const lines = [
    'credproxy: keep credentials on the host while a CLI runs in a sandbox.',
    '',
    'Usage: credproxy <command> [options]',
    '',
    'Commands:',
  ]
  return lines.join('\n')
}

async function listCommands(): Promise<string> {
  const rows: string[] = []
  for (const [name, load] of Object.entries(COMMANDS)) {
    const command = await load()
    rows.push(`  ${name.padEnd(10)} ${command.summary}`)
  }
  return [
    globalHelp(),
    ...rows,
    '',
    'Run `credproxy <command> --help` for options and examples.',
    'Exit codes: 0 ok, 1 failure, 2 usage, 3 not found, 4 not granted or refused,',
    '            5 login required, 6 broker/keyring/sandbox unavailable.',
  ].join('\n')
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

export function exitCodeForProxyError(error: ProxyError): number {
  return PROXY_EXIT[error.code] ?? EXIT.FAILURE
}

export async function main(argv: readonly string[], io: CliIO): Promise<number> {
  const [name, ...args] = argv
  try {
    if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
      const topic = name === 'help' ? args[0] : undefined
      const load = topic === undefined ? undefined : COMMANDS[topic]
      writeLine(io.stdout, load === undefined ? await listCommands() : (await load()).help)
      return EXIT.OK
    }
    if (name === '--version' || name === '-V') {
      writeLine(io.stdout, VERSION)
      return EXIT.OK
    }
    const load = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined
    if (load === undefined) {
      writeLine(io.stderr, `credproxy: unknown command '${name}'`)
      writeLine(io.stderr, '  Run `credproxy --help` to see the commands.')
      return EXIT.USAGE
    }
    const command = await load()
    if (args.includes('--help') || args.includes('-h')) {
      const dashdash = args.indexOf('--')
      const helpAt = Math.max(args.indexOf('--help'), args.indexOf('-h'))
      if (dashdash === -1 || helpAt < dashdash) {
        writeLine(io.stdout, command.help)
        return EXIT.OK
      }
    }
    return await command.run(args, io)
  } catch (error) {
    return reportError(error, io)
  }
}

export function reportError(error: unknown, io: CliIO): number {
  if (error instanceof CliError) {
    writeLine(io.stderr, `credproxy: ${error.message}`)
    if (error.hint !== undefined) writeLine(io.stderr, `  ${error.hint}`)
    return error.exitCode
  }
  if (error instanceof ProxyError) {
    writeLine(io.stderr, `credproxy: ${error.message} (${error.code})`)
    return exitCodeForProxyError(error)
  }
  const message = error instanceof Error ? error.message : String(error)
  writeLine(io.stderr, `credproxy: unexpected error: ${message}`)
  if (io.env['CREDPROXY_DEBUG'] !== undefined && error instanceof Error && error.stack !== undefined) {
    writeLine(io.stderr, error.stack)
  } else {
    writeLine(io.stderr, '  Set CREDPROXY_DEBUG=1 for a stack trace, and please report it.')
  }
  return EXIT.FAILURE
}
