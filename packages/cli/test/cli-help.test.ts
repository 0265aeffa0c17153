// `--help` on every command and auth subcommand, in-process through main(): exit 0,
// an Examples: section a user can copy from, and the list that `credproxy --help` shows.
import { describe, expect, test } from 'vitest'
import { AUTH_SUBCOMMANDS } from '../src/commands/auth.js'
import { COMMANDS } from '../src/commands/index.js'
import { EXIT } from '../src/exit-codes.js'
import { runCli, type CliResult } from './helpers/cli-runner.js'

/** Help runs with a bare env (PATH only) in the current directory. */
const cli = (argv: string[]): Promise<CliResult> => runCli(argv, { env: { PATH: '/usr/bin:/bin' } })

/** The lines after `Examples:` up to the next blank line. */
function examples(help: string): string[] {
  const at = help.indexOf('\nExamples:\n')
  if (at === -1) return []
  return help.slice(at + '\nExamples:\n'.length).split('\n\n')[0]?.split('\n') ?? []
}

describe('credproxy <command> --help', () => {
  test.each(Object.keys(COMMANDS))('%s --help: exit 0, Usage and copyable examples', async (name) => {
    const result = await cli([name, '--help'])
    expect(result.code).toBe(EXIT.OK)
    expect(result.stderr).toBe('')
    expect(result.stdout).toMatch(new RegExp(`^Usage: credproxy ${name}\\b`))
    expect(examples(result.stdout).some((line) => new RegExp(`^\\s+(npx )?credproxy ${name}\\b`).test(line))).toBe(true)
    // `credproxy help NAME` and `-h` show the same text.
    expect((await cli(['help', name])).stdout).toBe(result.stdout)
    expect((await cli([name, '-h'])).stdout).toBe(result.stdout)
  })

  test.each(Object.keys(AUTH_SUBCOMMANDS))('auth %s --help: its own usage and examples', async (sub) => {
    const result = await cli(['auth', sub, '--help'])
    expect(result.code).toBe(EXIT.OK)
    expect(result.stdout).toMatch(new RegExp(`^Usage: credproxy auth ${sub}\\b`))
    expect(examples(result.stdout).some((line) => line.includes(`credproxy auth ${sub}`))).toBe(true)
    expect((await cli(['help', 'auth', sub])).stdout).toBe(result.stdout)
  })

  test('credproxy --help lists every command with its summary and the exit codes', async () => {
    const result = await cli(['--help'])
    expect(result.code).toBe(EXIT.OK)
    for (const [name, entry] of Object.entries(COMMANDS)) {
      expect(result.stdout).toContain(`  ${name.padEnd(10)} ${entry.summary}\n`)
    }
    expect(result.stdout).toContain('5 login required')
    expect((await cli([])).stdout).toBe(result.stdout)
  })

  test('a --help after `--` belongs to the wrapped command, not to credproxy', async () => {
    // exec parses its own arguments (and stops at the missing --key) instead of printing help.
    const result = await cli(['exec', '--', 'node', '--help'])
    expect(result.stdout).not.toContain('Usage: credproxy exec')
    expect(result.stderr).toContain('no --key given')
  })

  test('help for an unknown command is a usage error naming it', async () => {
    const result = await cli(['help', 'nope'])
    expect(result.code).toBe(EXIT.USAGE)
    expect(result.stderr).toContain("unknown command 'nope'")
    expect(result.stdout).toBe('')
  })
})
