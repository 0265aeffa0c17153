import { mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { command as auditCommand } from '../src/commands/audit.js'
import { main } from '../src/cli.js'
import { resolvePaths } from '../src/paths.js'
import { AUDIT_INVALID_VALUE, auditLogPath, formatAuditLine, type AuditLine } from '../src/audit/audit-format.js'
import { readAuditEntries } from '../src/audit/audit-reader.js'
import { AuditLog } from '../src/audit/audit-writer.js'
import type { AuditEntry } from '../src/broker/hooks.js'
import { captureIO } from './helpers/security-helpers.js'

let home: string
let path: string

beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), 'cp-audit-'))
  path = auditLogPath(resolvePaths({ CREDPROXY_HOME: home }))
})

afterEach(async () => {
  await rm(home, { recursive: true, force: true })
})

const TYPICAL = {
  session: 'sess-0001',
  event: 'request',
  peer: { pid: 1234, uid: 1000, gid: 1000 },
  op: 'get_token',
  provider: 'anthropic',
  bucket: 'default',
  outcome: 'ok',
  durationMs: 1.25,
} as const

/** A typical request entry; `undefined` in `over` removes a field. */
const entry = (over: { [K in keyof AuditEntry]?: AuditEntry[K] | undefined } = {}): AuditEntry => {
  const merged: Record<string, unknown> = { ...TYPICAL, ...over }
  for (const [name, value] of Object.entries(merged)) if (value === undefined) delete merged[name]
  return merged as unknown as AuditEntry
}

async function lines(file: string): Promise<Record<string, unknown>[]> {
  const text = await readFile(file, 'utf8')
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>)
}

async function collect(iterable: AsyncIterable<AuditLine>): Promise<AuditLine[]> {
  const out: AuditLine[] = []
  for await (const line of iterable) out.push(line)
  return out
}

describe('AuditLog', () => {
  test('writes one JSON line per entry with time, session, event, peer, op, target, outcome and duration', async () => {
    const log = await AuditLog.open(path)
    log.write(entry())
    log.write(entry({ event: 'connection_refused', op: undefined, provider: undefined, bucket: undefined, outcome: 'FORBIDDEN', reason: 'uid-mismatch' }))
    await log.close()
    const written = await lines(path)
    expect(written).toHaveLength(2)
    expect(written[0]).toMatchObject(TYPICAL)
    expect(new Date(String(written[0]?.['time'])).toString()).not.toBe('Invalid Date')
    expect(written[1]).toMatchObject({ event: 'connection_refused', outcome: 'FORBIDDEN', reason: 'uid-mismatch' })
  })

  test('creates the file 0600 in a 0700 directory under the state dir', async () => {
    const log = await AuditLog.open(path)
    log.write(entry())
    await log.close()
    expect(path).toBe(join(home, 'state', 'audit.log'))
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    expect((await stat(join(home, 'state'))).mode & 0o777).toBe(0o700)
  })

  test('repairs a log file found with a wider mode', async () => {
    const first = await AuditLog.open(path)
    await first.close()
    await import('node:fs/promises').then((fs) => fs.chmod(path, 0o644))
    const log = await AuditLog.open(path)
    await log.close()
    expect((await stat(path)).mode & 0o777).toBe(0o600)
  })

  test('writes only audit fields: a secret on an extra property never reaches the file', async () => {
    const log = await AuditLog.open(path)
    const sneaky = {
      ...entry(),
      token: { access_token: 'at-SECRET-1', refresh_token: 'rt-SECRET-2' },
      secret: 'ss-SECRET-3',
      peer: { pid: 1, uid: 2, gid: 3, env: 'SECRET-4' },
    } as unknown as AuditEntry
    log.write(sneaky)
    await log.close()
    const text = await readFile(path, 'utf8')
    expect(text).not.toContain('SECRET')
    expect(Object.keys(JSON.parse(text) as object).sort()).toEqual(
      ['bucket', 'durationMs', 'event', 'op', 'outcome', 'peer', 'provider', 'session', 'time'].sort(),
    )
  })

  test('replaces peer-supplied values that break the name rules (huge, escapes, newlines)', async () => {
    const log = await AuditLog.open(path)
    log.write(entry({ op: `x${'A'.repeat(100_000)}`, provider: 'evil\u001b[31m\nprovider', key: '../../etc', reason: 'no spaces allowed' }))
    await log.close()
    const text = await readFile(path, 'utf8')
    expect(text.split('\n').filter(Boolean)).toHaveLength(1)
    expect(text.length).toBeLessThan(1_000)
    expect(JSON.parse(text)).toMatchObject({
      op: AUDIT_INVALID_VALUE,
      provider: AUDIT_INVALID_VALUE,
      key: AUDIT_INVALID_VALUE,
      reason: AUDIT_INVALID_VALUE,
    })
  })

  test('rotates before the cap: audit.log.1 ... .N, never more files, no line split across files', async () => {
    const log = await AuditLog.open(path, { maxBytes: 2_000, maxFiles: 3 })
    for (let i = 0; i < 100; i++) {
      log.write(entry({ durationMs: i }))
      if (i % 10 === 9) await log.flush()
    }
    await log.close()
    const names = (await readdir(join(home, 'state'))).sort()
    expect(names).toEqual(['audit.log', 'audit.log.1', 'audit.log.2', 'audit.log.3'])
    for (const name of names) {
      const file = join(home, 'state', name)
      expect((await stat(file)).size).toBeLessThanOrEqual(2_000)
      expect((await stat(file)).mode & 0o777).toBe(0o600)
      for (const line of await lines(file)) expect(line['session']).toBe('sess-0001')
    }
    // Oldest dropped first: what is left is the newest entries, in order.
    const read = await collect(readAuditEntries(path))
    const durations = read.map((line) => line.durationMs)
    expect(durations.at(-1)).toBe(99)
    expect(durations).toEqual([...durations].sort((a, b) => (a ?? 0) - (b ?? 0)))
  })

  test('close() flushes every queued entry; writes after close are ignored without throwing', async () => {
    const log = await AuditLog.open(path)
    for (let i = 0; i < 500; i++) log.write(entry({ durationMs: i }))
    await log.close()
    expect(() => log.write(entry())).not.toThrow()
    expect(await lines(path)).toHaveLength(500)
  })

  test('a disk failure never throws into the request path and is reported to the host log', async () => {
    const reported: string[] = []
    const log = await AuditLog.open(path, { log: (line) => reported.push(line) })
    await rm(join(home, 'state'), { recursive: true })
    await writeFile(join(home, 'state'), 'not a directory')
    expect(() => log.write(entry())).not.toThrow()
    await log.close()
    expect(reported.some((line) => line.includes('audit log'))).toBe(true)
  })

  test('refuses to write through a symlink planted at the log path', async () => {
    const first = await AuditLog.open(join(home, 'state', 'other.log'))
    await first.close()
    const target = join(home, 'target')
    await writeFile(target, '')
    await symlink(target, path)
    await expect(AuditLog.open(path)).rejects.toThrow()
    expect(await readFile(target, 'utf8')).toBe('')
  })

  test('formatAuditLine fills in the time and keeps a valid given one', () => {
    const line = JSON.parse(formatAuditLine(entry({ time: '2030-01-02T03:04:05.678Z' }))) as { time: string }
    expect(line.time).toBe('2030-01-02T03:04:05.678Z')
  })
})

describe('readAuditEntries', () => {
  test('follow yields lines appended later, across a rotation, until aborted', async () => {
    const log = await AuditLog.open(path, { maxBytes: 600, maxFiles: 2 })
    log.write(entry({ op: 'list_providers' }))
    await log.flush()
    const stop = new AbortController()
    const seen: string[] = []
    const reading = (async () => {
      for await (const line of readAuditEntries(path, { follow: true, signal: stop.signal, pollMs: 10 })) {
        seen.push(line.op ?? '')
        if (seen.length === 6) stop.abort()
      }
    })()
    for (const op of ['get_token', 'save_token', 'refresh_token', 'get_api_key', 'list_api_keys']) {
      log.write(entry({ op }))
      await log.flush()
      await new Promise((resolve) => setTimeout(resolve, 30))
    }
    await reading
    await log.close()
    expect(seen).toEqual(['list_providers', 'get_token', 'save_token', 'refresh_token', 'get_api_key', 'list_api_keys'])
  })
})

describe('credproxy audit', () => {
  test('prints time, session, peer, op, target and outcome, filtered by --session', async () => {
    const log = await AuditLog.open(path)
    log.write(entry())
    log.write(entry({ session: 'sess-0002', op: 'get_api_key', provider: undefined, bucket: undefined, key: 'OPENAI_API_KEY', outcome: 'NOT_GRANTED' }))
    await log.close()
    const io = captureIO({ CREDPROXY_HOME: home })
    expect(await main(['audit', '--session', 'sess-0002'], io)).toBe(0)
    const out = io.stdoutText()
    expect(out).toContain('sess-0002')
    expect(out).toContain('pid 1234 uid 1000')
    expect(out).toContain('get_api_key')
    expect(out).toContain('key OPENAI_API_KEY')
    expect(out).toContain('NOT_GRANTED')
    expect(out).not.toContain('sess-0001')
  })

  test('--json prints the stored lines as JSON', async () => {
    const log = await AuditLog.open(path)
    log.write(entry())
    await log.close()
    const io = captureIO({ CREDPROXY_HOME: home })
    expect(await main(['audit', '--json'], io)).toBe(0)
    expect(JSON.parse(io.stdoutText())).toMatchObject({ op: 'get_token', provider: 'anthropic', outcome: 'ok' })
  })

  test('says so when there is no audit log yet, and rejects a malformed --session', async () => {
    const io = captureIO({ CREDPROXY_HOME: home })
    expect(await main(['audit'], io)).toBe(0)
    expect(io.stderrText()).toContain('no audit entries yet')
    const bad = captureIO({ CREDPROXY_HOME: home })
    expect(await main(['audit', '--session', '../x'], bad)).toBe(2)
    expect(bad.stderrText()).toContain('credproxy sessions')
  })

  test('--help shows examples', () => {
    expect(auditCommand.help).toContain('Examples:')
    expect(auditCommand.help).toContain('--follow')
  })
})
