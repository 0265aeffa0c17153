// Expected failures, in-process through main(): one `credproxy: ...` line saying
// what went wrong, the next step on the following line, a documented exit code,
// and never a stack trace. The not-granted case runs in a real bubblewrap sandbox
// (needs `npm run build`: the sandbox runs the built `credproxy`).
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { EXIT } from '../src/exit-codes.js'
import { makeCliHome, removeCliHomes, runCli } from './helpers/cli-runner.js'
import { startServer } from './helpers/server-fixture.js'

let home: string
let cwd: string
let env: NodeJS.ProcessEnv

beforeAll(async () => {
  ;({ home, cwd, env } = await makeCliHome('cp-errors-', (stores) => stores.keys.saveKey('K', 'errors-test-key-value-8b1e')))
  writeFileSync(join(home, 'secret'), `${'ab'.repeat(32)}\n`, { mode: 0o600 })
})
afterAll(removeCliHomes)

interface Case {
  what: string
  argv: string[]
  env?: () => NodeJS.ProcessEnv
  exit: number
  /** In the `credproxy: ...` line. */
  says: string
  /** In the next line: the command or setting to try next. */
  next: string
}

const CASES: Case[] = [
  { what: 'unknown command', argv: ['frobnicate'], exit: EXIT.USAGE, says: "unknown command 'frobnicate'", next: 'credproxy --help' },
  { what: 'missing argument', argv: ['key', 'get'], exit: EXIT.USAGE, says: 'key get needs a NAME', next: 'credproxy key get OPENAI_API_KEY' },
  { what: 'missing PROVIDER', argv: ['auth', 'login'], exit: EXIT.USAGE, says: 'auth login takes one PROVIDER', next: 'credproxy auth login github' },
  { what: 'unknown option', argv: ['token', 'github', '--bukket', 'x'], exit: EXIT.USAGE, says: 'unknown option --bukket', next: 'credproxy token --help' },
  { what: 'key not found', argv: ['key', 'get', 'NOPE'], exit: EXIT.NOT_FOUND, says: 'no API key named NOPE', next: 'credproxy key set NOPE' },
  { what: 'no token stored', argv: ['token', 'github'], exit: EXIT.NOT_FOUND, says: 'no token stored for github', next: 'credproxy auth login github' },
  { what: 'no such session', argv: ['grant', '--session', 'abcdefgh12', '--key', 'K'], exit: EXIT.NOT_FOUND, says: 'no running session has id abcdefgh12', next: 'credproxy sessions' },
  {
    what: 'broker unreachable (CREDPROXY_SOCKET points nowhere)',
    argv: ['key', 'get', 'K'],
    env: () => ({ CREDPROXY_SOCKET: join(home, 'nobody-listens.sock'), CREDPROXY_SECRET_FILE: join(home, 'secret') }),
    exit: EXIT.UNAVAILABLE,
    says: 'cannot connect to the credproxy broker',
    next: 'unset CREDPROXY_SOCKET',
  },
  {
    what: 'a host-only command inside a sandbox',
    argv: ['sessions'],
    env: () => ({ CREDPROXY_SOCKET: '/run/credproxy/broker.sock' }),
    exit: EXIT.USAGE,
    says: '`credproxy sessions` works on the host only',
    next: 'on the host',
  },
  {
    what: 'bad CREDPROXY_KEYRING value',
    argv: ['key', 'list'],
    env: () => ({ CREDPROXY_KEYRING: 'sometimes' }),
    exit: EXIT.USAGE,
    says: 'CREDPROXY_KEYRING must be one of auto, off, required',
    next: 'CREDPROXY_KEYRING=off',
  },
]

function expectOneErrorLine(stderr: string, says: string, next: string): void {
  const lines = stderr.trimEnd().split('\n')
  expect(lines).toHaveLength(2)
  expect(lines[0]).toMatch(/^credproxy: /)
  expect(lines[0]).toContain(says)
  expect(lines[1]).toMatch(/^ {2}\S/)
  expect(lines[1]).toContain(next)
  expect(stderr).not.toMatch(/^\s+at /m)
}

describe('expected errors: one line, the next step, no stack trace', () => {
  test.each(CASES.map((c) => [c.what, c] as const))('%s', async (_what, c) => {
    const result = await runCli(c.argv, { env: { ...env, ...c.env?.() }, cwd })
    expect(result.code).toBe(c.exit)
    expect(result.stdout).toBe('')
    expectOneErrorLine(result.stderr, c.says, c.next)
  })

  test('not granted inside a bwrap sandbox: the command says NOT_GRANTED, credproxy run names the flag', async () => {
    const result = await runCli(['run', '--sandbox', 'bwrap', '--', 'credproxy', 'key', 'get', 'K'], { env, cwd })
    expect(result.code).toBe(EXIT.DENIED)
    expect(result.stdout).toBe('')
    const lines = result.stderr.trimEnd().split('\n')
    // Inside: the error and what the host can do; outside: the exact flag to rerun with.
    const inside = lines.findIndex((line) => /^credproxy: .*\(NOT_GRANTED\)$/.test(line))
    expect(inside).toBeGreaterThanOrEqual(0)
    expect(lines.slice(inside, inside + 2).join('\n')).toContain('--grant-key')
    expect(result.stderr).toMatch(/^credproxy: the sandbox was refused key K: rerun with --grant-key K, or grant it now: credproxy grant --session [0-9a-f]+ --key K$/m)
    expect(result.stderr).not.toMatch(/^\s+at /m)
    expect(result.stderr).not.toContain('errors-test-key-value-8b1e')
  })
})

describe('hints that name a command inside a sandbox', () => {
  // A process reads its session secret once: every broker in this file shares the one in `home/secret`.
  const secret = Buffer.from('ab'.repeat(32), 'hex')

  /** The environment of a process inside the sandbox of `fixture`. */
  function inside(fixture: Awaited<ReturnType<typeof startServer>>): NodeJS.ProcessEnv {
    return { ...env, CREDPROXY_SOCKET: fixture.socketPath, CREDPROXY_SECRET_FILE: join(home, 'secret') }
  }

  test('auth login of an ungranted provider: the host command carries --session <id>, as grant needs it', async () => {
    const fixture = await startServer({ secret, grants: { providers: [], keys: [], capabilities: ['read', 'login'] } })
    try {
      const result = await runCli(['auth', 'login', 'testprov'], { env: inside(fixture), cwd })
      expect(result.code).toBe(EXIT.DENIED)
      expectOneErrorLine(result.stderr, 'provider testprov is not granted', 'on the host')
      expect(result.stderr).toMatch(/`credproxy grant --session [A-Za-z0-9_-]+ --provider testprov`/)
      expect(result.stderr).not.toContain('credproxy grant --provider')
    } finally {
      await fixture.cleanup()
    }
  })

  test('a missing key inside the sandbox says to store it on the host, not to run `key set` where it is refused', async () => {
    const fixture = await startServer({ secret, grants: { providers: [], keys: ['NOPE'], capabilities: ['read', 'login'] } })
    try {
      const result = await runCli(['key', 'get', 'NOPE'], { env: inside(fixture), cwd })
      expect(result.code).toBe(EXIT.NOT_FOUND)
      expectOneErrorLine(result.stderr, 'no API key named NOPE', 'on the host (outside the sandbox) with: credproxy key set NOPE')
    } finally {
      await fixture.cleanup()
    }
  })

  test('FORBIDDEN (the broker refused the peer) does not blame a missing capability', async () => {
    const fixture = await startServer({ secret, peerCheck: () => ({ ok: false, peer: null, reason: 'test refuses every peer' }) })
    try {
      const result = await runCli(['key', 'get', 'K'], { env: inside(fixture), cwd })
      expect(result.code).toBe(EXIT.DENIED)
      expectOneErrorLine(result.stderr, '(FORBIDDEN)', 'refused this process')
      expect(result.stderr).not.toContain('--allow-save')
      expect(result.stderr).not.toContain('capability')
    } finally {
      await fixture.cleanup()
    }
  })
})
