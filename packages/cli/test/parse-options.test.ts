// Every command parses its flags through commands/parse-options.ts: one strictness rule,
// one usage error shape (the parseArgs message plus the command's --help).
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, test } from 'vitest'
import { parseCommandLine, parseOptions } from '../src/commands/parse-options.js'
import { UsageError } from '../src/errors.js'

const commands = join(import.meta.dirname, '..', 'src', 'commands')

describe('parseOptions', () => {
  test('no command calls node:util parseArgs itself', () => {
    const direct = readdirSync(commands)
      .filter((file) => file.endsWith('.ts') && file !== 'parse-options.ts')
      .filter((file) => /\bparseArgs\s*\(/.test(readFileSync(join(commands, file), 'utf8')))
    expect(direct).toEqual([])
  })

  test('an unknown flag is a UsageError pointing at the command help, or at the given hint', () => {
    const error = (fn: () => unknown): UsageError => {
      try {
        fn()
      } catch (caught) {
        return caught as UsageError
      }
      throw new Error('did not throw')
    }
    const plain = error(() => parseOptions('doctor', ['--nope'], { json: { type: 'boolean' } }))
    expect(plain).toBeInstanceOf(UsageError)
    expect(plain.message).toBe('unknown option --nope for `credproxy doctor`')
    expect(plain.hint).toBe('Run `credproxy doctor --help` for the options.')
    const hinted = error(() => parseOptions('key migrate', ['--to'], { to: { type: 'string' } }, { hint: 'Example: credproxy key migrate --to keyring' }))
    expect(hinted.hint).toBe('Example: credproxy key migrate --to keyring')
  })

  test('positionals: refused by parseOptions, returned by parseCommandLine', () => {
    expect(() => parseOptions('sessions', ['extra'], { json: { type: 'boolean' } })).toThrow(UsageError)
    const parsed = parseCommandLine('token', ['github', '--bucket', 'work'], { bucket: { type: 'string' } })
    expect(parsed.positionals).toEqual(['github'])
    expect(parsed.values.bucket).toBe('work')
  })
})
