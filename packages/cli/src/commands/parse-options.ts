// The option parsing every command shares: strict flags, no positionals, and a
// usage error that points at the command's --help.
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { UsageError } from '../errors.js'
import { closest } from '../suggest.js'

type OptionsConfig = NonNullable<ParseArgsConfig['options']>
type StrictConfig<O extends OptionsConfig, P extends boolean> = { args: string[]; options: O; strict: true; allowPositionals: P }
export type ParsedOptions<O extends OptionsConfig> = ReturnType<typeof parseArgs<StrictConfig<O, false>>>['values']
export type ParsedCommandLine<O extends OptionsConfig> = ReturnType<typeof parseArgs<StrictConfig<O, true>>>

export interface ParseSettings {
  /** The next step on a bad flag; default: run `credproxy <command> --help`. */
  hint?: string
}

function strictParse<O extends OptionsConfig, P extends boolean>(
  command: string,
  config: StrictConfig<O, P>,
  settings: ParseSettings,
): ReturnType<typeof parseArgs<StrictConfig<O, P>>> {
  try {
    return parseArgs<StrictConfig<O, P>>(config)
  } catch (error) {
    const translated = optionError(command, config.options ?? {}, error)
    throw settings.hint === undefined ? translated : new UsageError(translated.message, settings.hint)
  }
}

/** Parsed flag values of `credproxy <command>`; an unknown or malformed flag, or any positional, is a UsageError. */
export function parseOptions<const O extends OptionsConfig>(
  command: string,
  args: readonly string[],
  options: O,
  settings: ParseSettings = {},
): ParsedOptions<O> {
  return strictParse(command, { args: [...args], options, strict: true, allowPositionals: false }, settings).values
}

/** As parseOptions, for commands that also take positionals (PROVIDER, NAME): the caller checks their count. */
export function parseCommandLine<const O extends OptionsConfig>(
  command: string,
  args: readonly string[],
  options: O,
  settings: ParseSettings = {},
): ParsedCommandLine<O> {
  return strictParse(command, { args: [...args], options, strict: true, allowPositionals: true }, settings)
}

/** Node's parseArgs text (which talks about positionals and '--') said in credproxy's terms, with a "did you mean". */
export function optionError(command: string, options: OptionsConfig, error: unknown): UsageError {
  const text = error instanceof Error ? error.message : String(error)
  const code = (error as { code?: unknown }).code
  const help = `Run \`credproxy ${command} --help\` for the options.`
  const unknown = /^Unknown option '([^']*)'/.exec(text)?.[1]
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && unknown !== undefined) {
    const guess = unknown.startsWith('--') ? closest(unknown.slice(2).split('=')[0] ?? '', Object.keys(options)) : undefined
    return new UsageError(`unknown option ${unknown.slice(0, 64)} for \`credproxy ${command}\``, guess === undefined ? help : `Did you mean --${guess}? ${help}`)
  }
  const missing = /^Option '(?:-\w, )?(--[\w-]+) <value>' argument missing/.exec(text)?.[1]
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && missing !== undefined) {
    return new UsageError(`${missing} needs a value`, help)
  }
  const positional = /^Unexpected argument '([^']*)'/.exec(text)?.[1]
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL' && positional !== undefined) {
    return new UsageError(`unexpected argument ${JSON.stringify(positional.slice(0, 64))} for \`credproxy ${command}\``, help)
  }
  return new UsageError(text, help)
}

/** Where a command line without a wrapped command gets its hint: the example to copy. */
export interface CommandExamples {
  /** When there is no `--` at all. */
  missingDashDash: string
  /** When nothing follows `--`. */
  emptyCommand: string
}

/**
 * `[FLAGS...] -- COMMAND [ARGS...]` split at the first `--`: the flags for
 * parseOptions and the wrapped command, untouched. No `--`, or nothing after it,
 * is a UsageError pointing at the matching example.
 */
export function splitAtDashDash(
  args: readonly string[],
  examples: CommandExamples,
  /** With the command's options, a flag error (`run --grant-key` without a value) is reported before a missing `--`. */
  check?: { command: string; options: OptionsConfig },
): { flags: string[]; command: string[] } {
  const dashdash = args.indexOf('--')
  if (dashdash === -1) {
    if (check !== undefined) {
      try {
        parseArgs({ args: [...args], options: check.options, strict: true, allowPositionals: true })
      } catch (error) {
        throw optionError(check.command, check.options, error)
      }
    }
    throw new UsageError('missing `--` before the command', examples.missingDashDash)
  }
  const command = args.slice(dashdash + 1)
  if (command.length === 0) throw new UsageError('no command after `--`', examples.emptyCommand)
  return { flags: args.slice(0, dashdash), command }
}
