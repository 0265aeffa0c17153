// `credproxy key ...` run in-process through main(), on a fresh file store.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { EXIT } from '../src/exit-codes.js'
import { runCli, type CliResult, type CliStdin } from './helpers/cli-runner.js'

describe('credproxy key', () => {
  let home: string
  let env: NodeJS.ProcessEnv
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'credproxy-key-cmd-'))
    env = { CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' }
  })
  afterEach(async () => {
    await rm(home, { recursive: true, force: true })
  })

  const cli = (argv: string[], stdin: CliStdin = ''): Promise<CliResult> => runCli(argv, { env, cwd: '/', stdin })

  test('set from a pipe, then get prints the trimmed value', async () => {
    const set = await cli(['key', 'set', 'OPENAI_API_KEY'], 'sk-piped-value\n')
    expect(set).toMatchObject({ code: EXIT.OK, stdout: '' })
    expect(set.stderr).toContain('Stored API key OPENAI_API_KEY (file)')
    expect(set.stderr).not.toContain('sk-piped-value')
    expect(await cli(['key', 'get', 'OPENAI_API_KEY'])).toEqual({ code: EXIT.OK, stdout: 'sk-piped-value\n', stderr: '' })
  })

  test('set on a terminal prompts without echo, in raw mode, and restores the terminal', async () => {
    const rawModes: boolean[] = []
    const set = await cli(['key', 'set', 'NPM_TOKEN'], { tty: 'npm_secrez\u007ft\r', rawModes })
    expect(set.code).toBe(EXIT.OK)
    expect(rawModes).toEqual([true, false])
    expect(set.stderr).toContain('Value for NPM_TOKEN (input hidden): ')
    expect(set.stderr + set.stdout).not.toMatch(/npm_secre/)
    expect((await cli(['key', 'get', 'NPM_TOKEN'])).stdout).toBe('npm_secret\n')
  })

  test('Ctrl-C at the prompt stores nothing', async () => {
    const set = await cli(['key', 'set', 'K'], { tty: 'abc\u0003' })
    expect(set.code).toBe(130)
    expect(set.stderr).toContain('cancelled')
    expect((await cli(['key', 'get', 'K'])).code).toBe(EXIT.NOT_FOUND)
  })

  test('a value on the command line is refused without echoing it, and says to pipe it', async () => {
    const set = await cli(['key', 'set', 'OPENAI_API_KEY', 'sk-on-argv-123'])
    expect(set.code).toBe(EXIT.USAGE)
    expect(set.stderr).toContain('printf %s "$VALUE" | credproxy key set OPENAI_API_KEY')
    expect(set.stderr).not.toContain('sk-on-argv-123')
    const flag = await cli(['key', 'set', 'OPENAI_API_KEY', '--value=sk-flag-456'])
    expect(flag.code).toBe(EXIT.USAGE)
    expect(flag.stderr).not.toContain('sk-flag-456')
    expect((await cli(['key', 'list', '--json'])).stdout).toBe('{"keys":[]}\n')
  })

  test('a secret typed in place of the NAME is not echoed back', async () => {
    const set = await cli(['key', 'set', 'sk-live/abc+def=='], 'value')
    expect(set.code).toBe(EXIT.USAGE)
    expect(set.stderr).toContain('is not a valid key name')
    expect(set.stderr).not.toContain('sk-live/abc+def==')
  })

  test('an empty piped value stores nothing', async () => {
    const set = await cli(['key', 'set', 'K'], '  \n')
    expect(set.code).toBe(EXIT.USAGE)
    expect(set.stderr).toContain('empty')
  })

  test('get of a missing key exits 3 with a hint to set it', async () => {
    const get = await cli(['key', 'get', 'NOPE'])
    expect(get).toEqual({
      code: EXIT.NOT_FOUND,
      stdout: '',
      stderr: 'credproxy: no API key named NOPE\n  Store one with: credproxy key set NOPE\n',
    })
  })

  test('delete of a missing key exits 3 and points to `key list`, not to storing it', async () => {
    const del = await cli(['key', 'delete', 'NOPE'])
    expect(del).toEqual({
      code: EXIT.NOT_FOUND,
      stdout: '',
      stderr: 'credproxy: no API key named NOPE\n  Nothing was deleted; list the stored keys with: credproxy key list\n',
    })
  })

  test('list shows names only (plain and --json); delete removes and reports a missing key', async () => {
    await cli(['key', 'set', 'B_KEY'], 'secret-b')
    await cli(['key', 'set', 'A_KEY'], 'secret-a')
    const list = await cli(['key', 'list'])
    expect(list).toEqual({ code: EXIT.OK, stdout: 'A_KEY\nB_KEY\n', stderr: '' })
    expect((await cli(['key', 'list', '--json'])).stdout).toBe('{"keys":["A_KEY","B_KEY"]}\n')
    expect((await cli(['key', 'delete', 'A_KEY'])).code).toBe(EXIT.OK)
    expect((await cli(['key', 'delete', 'A_KEY'])).code).toBe(EXIT.NOT_FOUND)
    expect((await cli(['key', 'list'])).stdout).toBe('B_KEY\n')
  })

  test('invalid names and unknown subcommands are usage errors', async () => {
    expect((await cli(['key', 'get', '../etc'])).code).toBe(EXIT.USAGE)
    expect((await cli(['key', 'set', 'a b'], 'v')).code).toBe(EXIT.USAGE)
    const unknown = await cli(['key', 'show', 'X'])
    expect(unknown.code).toBe(EXIT.USAGE)
    expect(unknown.stderr).toContain('credproxy key --help')
  })

  test('--help shows usage with examples', async () => {
    const out = await cli(['key', '--help'])
    expect(out.code).toBe(EXIT.OK)
    expect(out.stdout).toContain('Usage: credproxy key')
    expect(out.stdout).toContain('Examples:')
  })

  test('a bad CREDPROXY_KEYRING is reported by name', async () => {
    env = { ...env, CREDPROXY_KEYRING: 'maybe' }
    const out = await cli(['key', 'list'])
    expect(out.code).toBe(EXIT.USAGE)
    expect(out.stderr).toContain('CREDPROXY_KEYRING must be one of auto, off, required')
  })
})
