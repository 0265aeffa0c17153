// What the short commands load (scripts/bundle.mjs, bin/credproxy.js). Inside a sandbox,
// `key get`, `token` and `exec` load one file that imports only Node built-ins, with no
// host storage, OAuth, broker or zod code in it; every other command still loads the main
// bundle. On the host, `key get` and `token` (for a token with time left) load no zod and
// no OAuth code. Needs `npm run build` (it checks the built files).
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, test } from 'vitest'

const BIN = fileURLToPath(new URL('../bin/credproxy.js', import.meta.url))
const SANDBOX_BUNDLE = fileURLToPath(new URL('../dist/bundle/credproxy-sandbox.js', import.meta.url))
const REGISTER = fileURLToPath(new URL('./fixtures/load-log-register.mjs', import.meta.url))
const scratch = mkdtempSync(join(tmpdir(), 'cp-bundle-'))
const HOST_ENV = { PATH: process.env['PATH'], HOME: scratch, CREDPROXY_HOME: join(scratch, 'home'), CREDPROXY_KEYRING: 'off' }
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

/** The files (repo-relative) `credproxy args` loads with env, and its result. */
function filesLoaded(args: string[], env: NodeJS.ProcessEnv): { files: string[]; status: number | null; stderr: string } {
  const log = join(scratch, `load-${Math.random().toString(36).slice(2)}.log`)
  const result = spawnSync(process.execPath, ['--import', REGISTER, BIN, ...args], {
    env: { ...HOST_ENV, LOAD_LOG: log, ...env },
    encoding: 'utf8',
  })
  let text = ''
  try {
    text = readFileSync(log, 'utf8')
  } catch {
    // Nothing loaded.
  }
  const files = text
    .split('\n')
    .filter((line) => line !== '' && !line.endsWith('load-log-hook.mjs') && !line.endsWith('load-log-register.mjs'))
    .map((url) => fileURLToPath(url).replace(/^.*\/packages\/cli\//, ''))
  return { files, status: result.status, stderr: result.stderr }
}

/** The TypeScript/JS sources behind the loaded files (bundle files through their source maps). */
function sourcesOf(files: string[]): string[] {
  return files.flatMap((file) => {
    if (!file.startsWith('dist/bundle/')) return [file]
    const map = JSON.parse(readFileSync(fileURLToPath(new URL(`../${file}.map`, import.meta.url)), 'utf8')) as { sources: string[] }
    return map.sources
  })
}

function seed(args: string[], input: string): void {
  const result = spawnSync(process.execPath, [BIN, ...args], { env: HOST_ENV, input, encoding: 'utf8' })
  expect(result.stderr).not.toMatch(/error/i)
  expect(result.status).toBe(0)
}

describe('the in-sandbox bundle', () => {
  test('imports nothing but Node built-ins and holds no host storage, OAuth, broker or zod code', () => {
    const text = readFileSync(SANDBOX_BUNDLE, 'utf8')
    const imports = [...text.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*)"([^"]+)"/g)].map((m) => m[1])
    expect(imports.length).toBeGreaterThan(0)
    expect(imports.filter((spec) => !spec?.startsWith('node:'))).toEqual([])
    const { sources } = JSON.parse(readFileSync(`${SANDBOX_BUNDLE}.map`, 'utf8')) as { sources: string[] }
    expect(sources.some((s) => s.includes('commands/key'))).toBe(true)
    // The stubs that stand in for host-only imports (they only throw) are named by their namespace.
    // ...and oauth/refresh-margin.ts is one constant `token` compares with.
    const code = sources.filter((s) => !s.startsWith('not-in-sandbox-bundle:') && !s.endsWith('oauth/refresh-margin.ts'))
    expect(code.filter((s) => /\/(storage|oauth|broker|control|audit)\/|node_modules\/zod|openid-client/.test(s))).toEqual([])
  })

  test.each([
    [['key', 'get', 'K']],
    [['token', 'github']],
    [['exec', '--key', 'K', '--', 'true']],
  ])('inside a sandbox `credproxy %j` loads the launcher and that one file, and reports errors as main does', (args) => {
    // No secret handed over: the command fails the way every in-sandbox command does, after loading.
    const run = filesLoaded(args, { CREDPROXY_SOCKET: join(scratch, 'no-broker.sock') })
    expect(run.files).toEqual(['bin/credproxy.js', 'dist/bundle/credproxy-sandbox.js'])
    expect(run.stderr).toContain('no session secret was handed to this process')
    expect(run.status).toBe(4)
  })

  test('on the host, and for other commands inside, the main bundle loads (host stores are not in the sandbox file)', () => {
    const host = filesLoaded(['key', 'get', 'K'], {})
    expect(host.files).toContain('dist/bundle/credproxy.js')
    expect(host.files).not.toContain('dist/bundle/credproxy-sandbox.js')
    expect(host.status).toBe(3)
    const list = filesLoaded(['key', 'list'], { CREDPROXY_SOCKET: join(scratch, 'no-broker.sock') })
    expect(list.files).toContain('dist/bundle/credproxy.js')
    expect(list.files).not.toContain('dist/bundle/credproxy-sandbox.js')
  })
})

describe('on the host', () => {
  // oauth/refresh-margin.ts is the one constant `token` compares with.
  const noHeavyCode = (sources: string[]): string[] =>
    sources.filter((s) => /\/oauth\/|node_modules\/zod|openid-client|jose/.test(s) && !s.endsWith('oauth/refresh-margin.ts'))

  test('`key get` on the file store, and `token` for a token with time left, load no zod and no OAuth code', () => {
    seed(['key', 'set', 'K'], 'sk-host')
    seed(['auth', 'import', 'p1'], JSON.stringify({ access_token: 'at-1', refresh_token: 'rt-1', token_type: 'Bearer', expiry: 4_000_000_000 }))
    const get = filesLoaded(['key', 'get', 'K'], {})
    expect(get.status).toBe(0)
    expect(noHeavyCode(sourcesOf(get.files))).toEqual([])
    const token = filesLoaded(['token', 'p1'], {})
    expect(token.status).toBe(0)
    expect(noHeavyCode(sourcesOf(token.files))).toEqual([])
  })

  test('`token` for a token about to expire goes through the OAuth broker (which refreshes where a provider is configured)', () => {
    const soon = Math.floor(Date.now() / 1000) + 20
    seed(['auth', 'import', 'p2'], JSON.stringify({ access_token: 'at-2', refresh_token: 'rt-2', token_type: 'Bearer', expiry: soon }))
    const token = filesLoaded(['token', 'p2'], {})
    // No providers.json: nothing to refresh with, and the token still has seconds left.
    expect(token.status).toBe(0)
    expect(sourcesOf(token.files).some((s) => s.includes('oauth/host-oauth-broker'))).toBe(true)
  })
})

describe('credproxy run', () => {
  test('`run -- true` loads no egress proxy (x509), no OAuth or credential-source code without their config files, and only zod\'s English locale', () => {
    const run = filesLoaded(['run', '--sandbox', 'bwrap', '--', 'true'], {})
    expect(run.stderr).toBe('')
    expect(run.status).toBe(0)
    const sources = sourcesOf(run.files)
    expect(sources.some((s) => s.endsWith('commands/run.ts'))).toBe(true)
    const unneeded = /\/(egress|oauth)\/|session-egress|@peculiar|credentials\/(host-oauth|sourced-credential-source|sources-config|source-runner)|zod\/v4\/locales\/(?!en\.js)|openid-client/
    // oauth/errors.ts maps error codes for every credential source.
    expect(sources.filter((s) => unneeded.test(s) && !s.endsWith('oauth/errors.ts'))).toEqual([])
  })
})
