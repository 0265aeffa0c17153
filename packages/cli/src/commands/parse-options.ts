// The option parsing every command shares: strict flags, no positionals, and a
// usage error that points at the command's --help.
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { UsageError } from '../errors.js'

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
    throw new UsageError(error instanceof Error ? error.message : String(error), settings.hint ?? `Run \`credproxy ${command} --help\` for the options.`)
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
export function splitAtDashDash(args: readonly string[], examples: CommandExamples): { flags: string[]; command: string[] } {
  const dashdash = args.indexOf('--')
  if (dashdash === -1) throw new UsageError('missing `--` before the command', examples.missingDashDash)
  const command = args.slice(dashdash + 1)
  if (command.length === 0) throw new UsageError('no command after `--`', examples.emptyCommand)
  return { flags: args.slice(0, dashdash), command }
}
