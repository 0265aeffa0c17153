// One home for errors: lower layers throw coded CredproxyErrors and never reach up into the
// terminal layer; only cli.ts turns a code into an exit code.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { describe, expect, test } from 'vitest'
import { exitCodeFor, reportError } from '../src/cli.js'
import { CREDPROXY_ERROR_CODES, CredproxyError, type CredproxyErrorCode } from '../src/errors.js'
import { EXIT } from '../src/exit-codes.js'

const src = join(import.meta.dirname, '..', 'src')
const coreSrc = join(import.meta.dirname, '..', '..', 'core', 'src')

function importsOf(dir: string): { file: string; from: string }[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.ts'))
    .flatMap((file) =>
      [...readFileSync(join(dir, file), 'utf8').matchAll(/^(?:import|export)[^'"]*from '([^']+)'/gm)].map((m) => ({ file, from: m[1] ?? '' })),
    )
}

describe('layering of errors', () => {
  test('storage, control, oauth, sandbox, broker and audit never import exit codes or a CLI error', () => {
    for (const layer of ['storage', 'control', 'oauth', 'sandbox', 'broker', 'audit']) {
      const bad = importsOf(join(src, layer)).filter(({ from }) => from.endsWith('/exit-codes.js'))
      expect(bad, layer).toEqual([])
      for (const file of readdirSync(join(src, layer)).filter((f) => f.endsWith('.ts'))) {
        expect(readFileSync(join(src, layer, file), 'utf8'), `${layer}/${file}`).not.toMatch(/\bCliError\b|\bEXIT\./)
      }
    }
  })

  test('errors.ts imports nothing: cli.ts loads it for every command, even --version, so it must not pull in core or zod', () => {
    expect(importsOf(src).filter(({ file }) => file === 'errors.ts')).toEqual([])
  })

  test('oauth/ does not import broker/, and core protocol/ imports nothing from auth/ or client/', () => {
    expect(importsOf(join(src, 'oauth')).filter(({ from }) => from.includes('/broker/'))).toEqual([])
    expect(importsOf(join(coreSrc, 'protocol')).filter(({ from }) => from.startsWith('../'))).toEqual([])
  })
})

describe('exit codes', () => {
  test.each(Object.keys(CREDPROXY_ERROR_CODES) as CredproxyErrorCode[])('%s exits with a documented code', (code) => {
    // dev-docs/cli.md "Exit codes", plus 127 for a command that cannot be found and 130 for Ctrl-C (what a shell prints).
    expect([...Object.values(EXIT), 127, 130]).toContain(exitCodeFor(new CredproxyError(code, 'x')))
  })

  test('the codes the lower layers throw most keep their exit codes', () => {
    const exit = (code: CredproxyErrorCode): number => exitCodeFor(new CredproxyError(code, 'x'))
    expect([exit('USAGE'), exit('NOT_FOUND'), exit('KEYRING_UNAVAILABLE'), exit('UNAVAILABLE')]).toEqual([EXIT.USAGE, EXIT.NOT_FOUND, EXIT.UNAVAILABLE, EXIT.UNAVAILABLE])
    expect([exit('INVALID_FILE'), exit('ENVELOPE_INVALID'), exit('FAILED'), exit('COMMAND_NOT_FOUND')]).toEqual([EXIT.FAILURE, EXIT.FAILURE, EXIT.FAILURE, 127])
  })

  test('the CLI prints the message and the hint, never the cause', async () => {
    const stderr = new PassThrough()
    const io = { stdin: new PassThrough(), stdout: new PassThrough(), stderr, env: {}, cwd: '/' }
    const cause = new Error('raw library text')
    const exit = await reportError(new CredproxyError('KEYRING_UNAVAILABLE', 'no keyring', { hint: 'Start one.', cause }), io)
    expect(exit).toBe(EXIT.UNAVAILABLE)
    expect(String(stderr.read())).toBe('credproxy: no keyring\n  Start one.\n')
  })
})
