// Errors a new user hits first, in credproxy's own words: no Node parseArgs text,
// no raw bwrap line, the right exit code, and a "did you mean" where one fits.
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, test } from 'vitest'
import { VERSION } from '../src/cli.js'
import { makeCliHome, removeCliHomes, runCli } from './helpers/cli-runner.js'

afterEach(() => removeCliHomes())

async function cli(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const { env, cwd } = await makeCliHome('cp-plain-')
  return runCli(argv, { env, cwd })
}

function twoLines(stderr: string): [string, string] {
  const lines = stderr.trimEnd().split('\n')
  expect(lines).toHaveLength(2)
  return [lines[0] ?? '', lines[1] ?? '']
}

describe('option and command mistakes', () => {
  test('`key list --jsn`: an unknown option of that command, with the one it resembles', async () => {
    const result = await cli(['key', 'list', '--jsn'])
    expect(result.code).toBe(2)
    const [what, next] = twoLines(result.stderr)
    expect(what).toBe('credproxy: unknown option --jsn for `credproxy key`')
    expect(next).toBe('  Did you mean --json? Run `credproxy key --help` for the options.')
    expect(result.stderr).not.toMatch(/positional|as in '--/)
  })

  test('`run --grant-key` without a value names the option, not a missing `--`', async () => {
    const result = await cli(['run', '--grant-key'])
    expect(result.code).toBe(2)
    expect(twoLines(result.stderr)[0]).toBe('credproxy: --grant-key needs a value')
  })

  test('`run --grnt-key K -- true`: did you mean --grant-key', async () => {
    const result = await cli(['run', '--grnt-key', 'K', '--', 'true'])
    expect(result.code).toBe(2)
    expect(twoLines(result.stderr)[1]).toContain('Did you mean --grant-key?')
  })

  test('`--foo` is an unknown option, not an unknown command; `--verison` suggests --version', async () => {
    const foo = await cli(['--foo'])
    expect(foo.code).toBe(2)
    expect(twoLines(foo.stderr)[0]).toBe('credproxy: unknown option --foo')
    expect(twoLines((await cli(['--verison'])).stderr)[1]).toContain('Did you mean --version?')
  })

  test('a misspelt command suggests the command', async () => {
    const result = await cli(['kye', 'list'])
    expect(result.code).toBe(2)
    expect(twoLines(result.stderr)).toEqual(["credproxy: unknown command 'kye'", '  Did you mean `credproxy key`? Run `credproxy --help` to see the commands.'])
  })

  test('-v and `version` print the version; --help lists --version', async () => {
    for (const argv of [['-v'], ['version'], ['--version']]) expect(await cli(argv)).toEqual({ code: 0, stdout: `${VERSION}\n`, stderr: '' })
    const help = await cli(['--help'])
    expect(help.stdout).toMatch(/^ {2}--version, -v, -V +print the version/m)
  })
})

describe.runIf(process.platform === 'linux')('sandbox launch mistakes, before bwrap runs', () => {
  test('a --bind source that does not exist', async () => {
    const result = await cli(['run', '--sandbox', 'bwrap', '--bind', '/nonexistent-cp-bind', '--', 'true'])
    expect(result.code).toBe(2)
    expect(twoLines(result.stderr)[0]).toBe('credproxy: --bind /nonexistent-cp-bind does not exist')
    expect(result.stderr).not.toContain('bwrap:')
  })

  test('a command that does not exist exits 127, like a shell', async () => {
    const result = await cli(['run', '--sandbox', 'bwrap', '--', 'no-such-command-cp'])
    expect(result.code).toBe(127)
    expect(twoLines(result.stderr)[0]).toBe('credproxy: command not found: no-such-command-cp')
    expect(result.stderr).not.toContain('bwrap:')
  })

  test('a command that lives only in the hidden home says so and how to expose it', async () => {
    const dir = mkdtempSync(join(homedir(), '.cp-plain-bin-'))
    try {
      mkdirSync(join(dir, 'bin'))
      writeFileSync(join(dir, 'bin', 'home-tool'), '#!/bin/sh\necho hi\n')
      chmodSync(join(dir, 'bin', 'home-tool'), 0o755)
      const result = await cli(['run', '--sandbox', 'bwrap', '--', join(dir, 'bin', 'home-tool')])
      expect(result.code).toBe(127)
      const [what, next] = twoLines(result.stderr)
      expect(what).toContain('in a directory the sandbox hides')
      expect(next).toContain(`--bind ${join(dir, 'bin')}`)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test('`credproxy run` inside a sandbox is refused as host-only, in one plain line', async () => {
    const result = await cli(['run', '--sandbox', 'bwrap', '--', 'credproxy', 'run', '--', 'true'])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('`credproxy run` works on the host only, not inside a sandbox')
    expect(result.stderr).not.toContain('bwrap:')
  })
})
