// Credential sources (sources.json) with real commands: shell scripts written into a
// fresh mkdtemp directory, run on the host by the source runner, cached by the source
// cache, and served through a real host session's broker socket.
import { existsSync, readFileSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, test } from 'vitest'
import { AuditLineSchema, auditLogPath } from '../src/audit/audit-format.js'
import { AUDIT_RECORD_LINES_PER_INTERVAL } from '../src/audit/audit-budget.js'
import { formatAuditLine } from '../src/commands/audit.js'
import { SourceCache, SOURCE_FAILURE_CACHE_MS, SOURCE_FORCED_READ_INTERVAL_MS } from '../src/credentials/source-cache.js'
import { MAX_SOURCE_OUTPUT_BYTES, SourceError, type SourceRun } from '../src/credentials/source-runner.js'
import { parseSourcesConfig, sourcesFilePath, type SourceConfig } from '../src/credentials/sources-config.js'
import { resolvePaths } from '../src/paths.js'
import { startHostSession, type HostSession } from '../src/session/host-session.js'
import { memoryStores } from './helpers/server-memory-stores.js'
import { RawClient } from './helpers/server-raw-client.js'

const dirs: string[] = []
const sessions: HostSession[] = []
afterEach(async () => {
  for (const s of sessions.splice(0)) await s.close()
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cp-sources-'))
  dirs.push(dir)
  return dir
}

/** A shell script in dir; each run appends a line to <dir>/<name>.runs first. */
async function script(dir: string, name: string, body: string): Promise<{ path: string; runs: () => Promise<number> }> {
  const path = join(dir, `${name}.sh`)
  const runsFile = join(dir, `${name}.runs`)
  await writeFile(path, `#!/bin/sh\necho run >> '${runsFile}'\n${body}\n`)
  await chmod(path, 0o755)
  const runs = async (): Promise<number> => (existsSync(runsFile) ? (await readFile(runsFile, 'utf8')).split('\n').filter(Boolean).length : 0)
  return { path, runs }
}

function keySource(name: string, spec: Record<string, unknown>): SourceConfig {
  const config = parseSourcesConfig(JSON.stringify({ keys: { [name]: spec } }), '/test/sources.json')
  const source = config.keys.get(name)
  if (source === undefined) throw new Error('no source')
  return source
}

const ENV = { PATH: process.env['PATH'] ?? '/usr/bin:/bin' }

describe('sources.json', () => {
  test('errors name the file and the field', () => {
    const bad = (json: unknown): string => {
      try {
        parseSourcesConfig(JSON.stringify(json), '/cfg/sources.json')
        return 'parsed'
      } catch (error) {
        return (error as Error).message
      }
    }
    expect(bad({ keys: { A: { command: ['x'], env: 'Y' } } })).toBe('/cfg/sources.json: invalid field keys.A.command: give exactly one of command, env, file')
    expect(bad({ keys: { A: { command: ['x'], timeout_ms: 0 } } })).toMatch(/^\/cfg\/sources\.json: invalid field keys\.A\.timeout_ms: /)
    expect(bad({ keys: { 'bad name': { env: 'X' } } })).toMatch(/invalid field keys\.bad name: key names match/)
    expect(bad({ tokens: { github: { env: 'X' } } })).toMatch(/invalid field tokens\.github: token sources are named provider\/bucket/)
    expect(bad({ keys: { A: { file: 'relative/path' } } })).toMatch(/invalid field keys\.A\.file: an absolute path/)
    expect(() => parseSourcesConfig('{"keys": {"A": {"command": ["op", "read", "op://s3cr3t"]', '/cfg/sources.json')).toThrow(/^\/cfg\/sources\.json is not valid JSON \(line 1, column \d+\)$/)
  })
})

describe('a command source', () => {
  test('prints a value: trimmed stdout is the secret, cached for its TTL, the run recorded without arguments', async () => {
    const dir = await tempDir()
    const s = await script(dir, 'value', 'printf "  sk-from-command\\n\\n"')
    const runs: SourceRun[] = []
    let now = 1_000_000
    const cache = new SourceCache({ env: ENV, now: () => now, onRun: (r) => runs.push(r) })
    const source = keySource('A', { command: [s.path, '--secret-arg'], ttl_seconds: 60 })
    expect(await cache.get(source)).toEqual({ value: 'sk-from-command' })
    now += 59_000
    expect((await cache.get(source)).value).toBe('sk-from-command')
    expect(await s.runs()).toBe(1)
    now += 2_000
    await cache.get(source)
    expect(await s.runs()).toBe(2)
    expect(runs[0]).toMatchObject({ name: 'A', kind: 'key', program: 'value.sh', exitCode: 0, ok: true })
    expect(JSON.stringify(runs)).not.toContain('--secret-arg')
  })

  test('prints JSON with an expiry: re-run at the expiry minus the margin on a test clock; the last good value served while valid', async () => {
    const dir = await tempDir()
    const fail = join(dir, 'fail')
    const s = await script(dir, 'json', `[ -e '${fail}' ] && exit 9\nn=$(wc -l < '${dir}/json.runs'); printf '{"value":"tok-%s","expires_in":300}' "$n"`)
    let now = 1_000_000
    const cache = new SourceCache({ env: ENV, now: () => now })
    const source = keySource('T', { command: [s.path], output: 'json', expiry_margin_seconds: 60, ttl_seconds: 3600 })
    expect(await cache.get(source)).toEqual({ value: 'tok-1', expiresAt: 1_300_000 })
    now += 239_000 // 61 s before expiry: still fresh
    expect((await cache.get(source)).value).toBe('tok-1')
    expect(await s.runs()).toBe(1)
    now += 2_000 // inside the margin: read again
    expect(await cache.get(source)).toEqual({ value: 'tok-2', expiresAt: now + 300_000 })
    expect(await s.runs()).toBe(2)

    // The minter breaks: inside the margin the old token (still valid) is served, and the failure is remembered briefly.
    await writeFile(fail, '')
    now += 241_000
    expect((await cache.get(source)).value).toBe('tok-2')
    expect(await s.runs()).toBe(3)
    now += SOURCE_FAILURE_CACHE_MS - 1
    expect((await cache.get(source)).value).toBe('tok-2')
    expect(await s.runs()).toBe(3)
    // Past its expiry the old token is no answer: the failure is.
    now += 60_000
    await expect(cache.get(source)).rejects.toThrow(/exited with 9/)
    expect(await s.runs()).toBe(4)
  })

  test('a value living less than the margin is reused for a few seconds; an expired one is a failure', async () => {
    const dir = await tempDir()
    const s = await script(dir, 'short', `printf '{"value":"short","expires_in":30}'`)
    let now = 1_000_000
    const cache = new SourceCache({ env: ENV, now: () => now })
    const short = keySource('S', { command: [s.path], output: 'json', expiry_margin_seconds: 60 })
    await cache.get(short)
    now += SOURCE_FAILURE_CACHE_MS - 1
    await cache.get(short)
    expect(await s.runs()).toBe(1)
    now += 2
    await cache.get(short)
    expect(await s.runs()).toBe(2)
    const old = await script(dir, 'old', `printf '{"value":"old","expires_at":1000}'`)
    await expect(cache.get(keySource('O', { command: [old.path], output: 'json' }))).rejects.toThrow('already expired')
  })

  test('an expires_at date is honoured', async () => {
    const dir = await tempDir()
    const s = await script(dir, 'at', `printf '{"value":"v","expires_at":"2030-01-01T00:00:00Z"}'`)
    const cache = new SourceCache({ env: ENV, now: () => Date.parse('2029-12-31T23:00:00Z') })
    expect(await cache.get(keySource('A', { command: [s.path], output: 'json' }))).toEqual({ value: 'v', expiresAt: Date.parse('2030-01-01T00:00:00Z') })
  })

  test('sleeps past the timeout: killed with its whole process group', async () => {
    const dir = await tempDir()
    const pidFile = join(dir, 'child.pid')
    const s = await script(dir, 'slow', `sleep 30 &\necho $! > '${pidFile}'\nsleep 30`)
    const runs: SourceRun[] = []
    const cache = new SourceCache({ env: ENV, onRun: (r) => runs.push(r) })
    const started = Date.now()
    await expect(cache.get(keySource('A', { command: [s.path], timeout_ms: 300 }))).rejects.toThrow(/timed out after 300 ms \(killed\)/)
    expect(Date.now() - started).toBeLessThan(5_000)
    const child = Number(await readFile(pidFile, 'utf8'))
    // The background sleep was in the same group: it is gone too (kill 0 probes without signalling).
    // A zombie awaiting its reaper counts as gone: it no longer runs.
    await expect.poll(async () => {
      const stat = await readFile(`/proc/${child}/stat`, 'utf8').catch(() => '')
      return stat === '' || /^\d+ \(.*\) Z/.test(stat) ? 'gone' : 'alive'
    }).toBe('gone')
    expect(runs[0]).toMatchObject({ exitCode: null, ok: false })
  })

  test('prints 2 MiB: refused once past the 1 MiB cap, the output not kept', async () => {
    const dir = await tempDir()
    const s = await script(dir, 'big', `head -c ${2 * 1024 * 1024} /dev/zero | tr '\\0' a`)
    const cache = new SourceCache({ env: ENV })
    const error = await cache.get(keySource('A', { command: [s.path] })).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(SourceError)
    expect((error as Error).message).toContain(`printed more than ${MAX_SOURCE_OUTPUT_BYTES} bytes (killed)`)
  })

  test('fails: the exit code is reported; the host log gets the first line of stderr only', async () => {
    const dir = await tempDir()
    const s = await script(dir, 'fail', 'echo "op: not signed in" >&2\necho "second line with more detail" >&2\nexit 4')
    const lines: string[] = []
    const error = await new SourceCache({ env: ENV, log: (line) => lines.push(line) }).get(keySource('A', { command: [s.path] })).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(SourceError)
    expect(error).toMatchObject({ exitCode: 4, message: 'source A (fail.sh) exited with 4' })
    expect(lines.join('\n')).toContain('source A (fail.sh) stderr: op: not signed in')
    expect(lines.join('\n')).not.toContain('second line')
  })

  test('a clean environment plus the named variables; stdin is /dev/null', async () => {
    const dir = await tempDir()
    const s = await script(dir, 'env', 'read line || true\nprintf "%s|%s|%s" "${PASSED:-unset}" "${NOT_PASSED:-unset}" "${line:-empty}"')
    const cache = new SourceCache({ env: { ...ENV, PASSED: 'yes', NOT_PASSED: 'leak' } })
    expect((await cache.get(keySource('A', { command: [s.path], pass_env: ['PASSED'] }))).value).toBe('yes|unset|empty')
  })

  test('a program name is looked up on the host PATH; an unknown one is a clear error', async () => {
    const dir = await tempDir()
    await script(dir, 'minter', 'echo from-path')
    const cache = new SourceCache({ env: { PATH: dir } })
    expect((await cache.get(keySource('A', { command: ['minter.sh'] }))).value).toBe('from-path')
    await expect(cache.get(keySource('B', { command: ['no-such-minter'] }))).rejects.toThrow('no-such-minter is not on the host PATH')
  })

  test('forced reads (refresh_token, an upstream 401) re-run the command at most once per SOURCE_FORCED_READ_INTERVAL_MS', async () => {
    let now = 1_000_000
    let reads = 0
    const cache = new SourceCache({ env: ENV, now: () => now, read: () => Promise.resolve({ value: `v${++reads}` }) })
    const source = keySource('A', { command: ['/bin/true'], ttl_seconds: 3600 })
    await cache.get(source)
    // A sandbox forcing every 5 s for just under the interval: no new run (a prompting command does not prompt).
    for (let at = 5_001; at < SOURCE_FORCED_READ_INTERVAL_MS; at += 5_001) {
      now = 1_000_000 + at
      await cache.get(source, { force: true })
    }
    expect(reads).toBe(1)
    now = 1_000_000 + SOURCE_FORCED_READ_INTERVAL_MS
    expect((await cache.get(source, { force: true })).value).toBe('v2')
    now += 5_001
    await cache.get(source, { force: true })
    expect(reads).toBe(2)
  })

  test('env and file sources: the variable as the session started, the file on every use', async () => {
    const dir = await tempDir()
    const file = join(dir, 'secret')
    await writeFile(file, 'one\n')
    const cache = new SourceCache({ env: { HOST_TOKEN: 'from-env' } })
    expect((await cache.get(keySource('E', { env: 'HOST_TOKEN' }))).value).toBe('from-env')
    const fileSource = keySource('F', { file })
    expect((await cache.get(fileSource)).value).toBe('one')
    await writeFile(file, 'two\n')
    expect((await cache.get(fileSource)).value).toBe('two')
    await expect(cache.get(keySource('G', { env: 'UNSET_VAR' }))).rejects.toThrow('host variable UNSET_VAR is not set')
  })
})

/** A host session over a temporary CREDPROXY_HOME with this sources.json. */
async function sessionWith(sources: unknown, keys: string[]): Promise<{ session: HostSession; home: string }> {
  const home = await tempDir()
  const env = { CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off', PATH: ENV.PATH }
  const paths = resolvePaths(env)
  await mkdir(paths.configDir, { recursive: true })
  await writeFile(sourcesFilePath(paths), JSON.stringify(sources))
  const session = await startHostSession({
    env,
    grants: { providers: [], keys, capabilities: ['read'] },
    command: ['test'],
    log: () => undefined,
    stores: memoryStores(),
    sandboxed: false,
  })
  sessions.push(session)
  return { session, home }
}

async function client(session: HostSession): Promise<RawClient> {
  const c = await RawClient.connect(session.socketPath)
  expect(await c.handshakeV3(session.secret)).toMatchObject({ ok: true })
  return c
}

describe('sources through a host session', () => {
  test('200 concurrent get_api_key for a cold source run the command exactly once', async () => {
    const dir = await tempDir()
    const s = await script(dir, 'cold', 'sleep 0.5\necho cold-value')
    const { session } = await sessionWith({ keys: { COLD: { command: [s.path] } } }, ['COLD'])
    // 20 connections x 10 requests: within the per-connection in-flight limit, all 200 in flight at once.
    const clients = await Promise.all(Array.from({ length: 20 }, () => client(session)))
    const answers = await Promise.all(clients.flatMap((c) => Array.from({ length: 10 }, () => c.request('get_api_key', { name: 'COLD' }))))
    expect(answers).toHaveLength(200)
    for (const a of answers) expect(a).toMatchObject({ ok: true, data: { key: 'cold-value' } })
    expect(await s.runs()).toBe(1)
    for (const c of clients) c.close()
  })

  test('a sandbox granted A cannot make the host run source B', async () => {
    const dir = await tempDir()
    const a = await script(dir, 'a', 'echo value-a')
    const b = await script(dir, 'b', 'echo value-b')
    const { session } = await sessionWith({ keys: { A: { command: [a.path] }, B: { command: [b.path] } } }, ['A'])
    const c = await client(session)
    expect(await c.request('get_api_key', { name: 'B' })).toMatchObject({ ok: false, code: 'NOT_GRANTED' })
    expect(await c.request('list_api_keys')).toMatchObject({ ok: true, data: { keys: ['A'] } })
    expect(await b.runs()).toBe(0)
    expect(await c.request('get_api_key', { name: 'A' })).toMatchObject({ ok: true, data: { key: 'value-a' } })
    expect(await a.runs()).toBe(1)
    expect(c.receivedText()).not.toContain('value-b')
    c.close()
  })

  test('a failing command: the code the sandbox sees, no stderr across the socket, the run in the audit log, the failure remembered', async () => {
    const dir = await tempDir()
    const s = await script(dir, 'fails', 'echo "vault: permission denied for s3cr3t-path" >&2\nexit 3')
    const { session, home } = await sessionWith({ keys: { F: { command: [s.path, 'arg-with-s3cr3t'] } } }, ['F'])
    const c = await client(session)
    const answer = await c.request('get_api_key', { name: 'F' })
    expect(answer).toMatchObject({ ok: false, code: 'REFRESH_FAILED' })
    expect(answer['error']).toContain('credproxy doctor --run-sources')
    expect(await c.request('get_api_key', { name: 'F' })).toMatchObject({ ok: false, code: 'REFRESH_FAILED' })
    expect(await s.runs()).toBe(1)
    expect(c.receivedText()).not.toContain('s3cr3t')
    c.close()
    await session.close()
    const lines = (await readFile(auditLogPath(resolvePaths({ CREDPROXY_HOME: home })), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)
    const run = lines.find((l) => l['event'] === 'source_run')
    expect(run).toMatchObject({ key: 'F', outcome: 'REFRESH_FAILED', source: { program: 'fails.sh', exitCode: 3 } })
    expect(typeof run?.['durationMs']).toBe('number')
    // `credproxy audit` shows which program ran and how it ended.
    expect(formatAuditLine(AuditLineSchema.parse(run))).toContain('source_run  key F via fails.sh exit 3  REFRESH_FAILED')
    expect(JSON.stringify(lines)).not.toContain('s3cr3t')
  })

  test('source runs the sandbox triggers are written behind the session audit budget (no flood of source_run lines)', async () => {
    const dir = await tempDir()
    const s = await script(dir, 'many', 'echo v')
    // Runs that worked are records (successes keep their own room beside refusals): one more than that room.
    const names = Array.from({ length: AUDIT_RECORD_LINES_PER_INTERVAL + 10 }, (_, i) => `K${i}`)
    const { session, home } = await sessionWith({ keys: Object.fromEntries(names.map((name) => [name, { command: [s.path] }])) }, names)
    const c = await client(session)
    for (const name of names) expect(await c.request('get_api_key', { name })).toMatchObject({ ok: true })
    c.close()
    await session.close()
    const lines = (await readFile(auditLogPath(resolvePaths({ CREDPROXY_HOME: home })), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)
    const runs = lines.filter((l) => l['event'] === 'source_run')
    // The budget's per-interval lines, then one summary line counting the rest.
    expect(runs.filter((l) => l['count'] === undefined)).toHaveLength(AUDIT_RECORD_LINES_PER_INTERVAL)
    expect(runs.find((l) => l['count'] !== undefined)?.['count']).toBe(10)
  })

  test('closing the session kills a source command still running, with its process group', async () => {
    const dir = await tempDir()
    const pidFile = join(dir, 'child.pid')
    const s = await script(dir, 'hang', `sleep 60 &\necho $! > '${pidFile}'\nsleep 60`)
    const { session } = await sessionWith({ keys: { HANG: { command: [s.path], timeout_ms: 120_000 } } }, ['HANG'])
    const c = await client(session)
    const answer = c.request('get_api_key', { name: 'HANG' }).catch(() => null)
    await expect.poll(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '').toBe(true)
    const started = Date.now()
    await session.close()
    expect(Date.now() - started).toBeLessThan(10_000)
    const child = Number(readFileSync(pidFile, 'utf8'))
    await expect.poll(async () => {
      const stat = await readFile(`/proc/${child}/stat`, 'utf8').catch(() => '')
      return stat === '' || /^\d+ \(.*\) Z/.test(stat) ? 'gone' : 'alive'
    }).toBe('gone')
    await answer
    c.close()
  })

  test('a token source serves get_token as a Bearer token with the minted expiry', async () => {
    const dir = await tempDir()
    const s = await script(dir, 'tok', `printf '{"value":"ya29.minted","expires_at":4102444800}'`)
    const { session } = await sessionWith({ tokens: { 'gcloud/default': { command: [s.path], output: 'json' } } }, [])
    expect(await session.credentials.freshToken('gcloud', 'default')).toEqual({ access_token: 'ya29.minted', token_type: 'Bearer', expiry: 4102444800 })
    expect(await session.credentials.listProviders()).toEqual(['gcloud'])
    expect(await session.credentials.accessToken('gcloud', 'default', { forceRefresh: true })).toMatchObject({ access_token: 'ya29.minted' })
    // A forced refresh right after a read does not run the command again (a 401 loop cannot make it spin).
    expect(await s.runs()).toBe(1)
  })
})
