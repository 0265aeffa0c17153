// The adapters to the host's machinery: credentials read from the key store and
// the OAuth broker at request time (never cached), and egress lines in the audit log.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { OAuthToken } from '@credproxy/core'
import { afterAll, describe, expect, test } from 'vitest'
import { egressAuditSink, hostEgressCredentials } from '../src/egress/index.js'
import { formatAuditLine as formatForTerminal } from '../src/commands/audit.js'
import { formatAuditLine } from '../src/audit/audit-format.js'
import { AuditLog } from '../src/audit/audit-writer.js'

const dir = mkdtempSync(join(tmpdir(), 'cp-egress-adapt-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

function token(access: string): OAuthToken {
  return { access_token: access, token_type: 'Bearer' } as OAuthToken
}

describe('hostEgressCredentials', () => {
  test('reads the key store on every call (a rotated key is seen at once)', async () => {
    let value = 'one'
    const credentials = hostEgressCredentials({
      apiKey: (name) => Promise.resolve(name === 'K' ? value : null),
      accessToken: () => Promise.resolve(null),
    })
    expect(await credentials.apiKey('K')).toBe('one')
    value = 'two'
    expect(await credentials.apiKey('K')).toBe('two')
    expect(await credentials.apiKey('MISSING')).toBeNull()
    expect(await credentials.accessToken('p', 'default')).toBeNull()
  })

  test('a fresh token normally, a forced refresh after a 401', async () => {
    const calls: string[] = []
    const source = {
      apiKey: () => Promise.resolve(null),
      accessToken: (provider: string, bucket: string, options: { forceRefresh?: boolean } = {}) => {
        calls.push(`${options.forceRefresh === true ? 'refresh' : 'fresh'}:${provider}/${bucket}`)
        return Promise.resolve(token(options.forceRefresh === true ? 'at-2' : 'at-1'))
      },
    }
    const credentials = hostEgressCredentials(source)
    expect(await credentials.accessToken('prov', 'default')).toBe('at-1')
    expect(await credentials.accessToken('prov', 'work', { forceRefresh: true })).toBe('at-2')
    expect(calls).toEqual(['fresh:prov/default', 'refresh:prov/work'])
  })
})

describe('egress audit lines', () => {
  test('one egress line per event, with its fields, in the real audit log', async () => {
    const log = await AuditLog.open(join(dir, 'audit.log'))
    const sink = egressAuditSink(log)
    sink({ session: 's1', rule: 'github', method: 'GET', host: 'api.github.com', path: '/user', status: 200, bytesIn: 0, bytesOut: 42, durationMs: 3.2, injected: true })
    sink({ session: 's1', method: 'CONNECT', host: 'evil.test', path: '', status: 403, bytesIn: 0, bytesOut: 0, durationMs: 0.1, injected: false, reason: 'host-not-allowed' })
    await log.close()
    const lines = readFileSync(join(dir, 'audit.log'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
    expect(lines).toHaveLength(2)
    expect(lines[0]).toMatchObject({ session: 's1', event: 'egress', outcome: 'ok', egress: { rule: 'github', method: 'GET', host: 'api.github.com', path: '/user', status: 200, bytesOut: 42, injected: true } })
    expect(lines[1]).toMatchObject({ event: 'egress', outcome: 'FORBIDDEN', reason: 'host-not-allowed', egress: { method: 'CONNECT', host: 'evil.test', status: 403, injected: false } })
    // `credproxy audit` shows what went where.
    expect(formatForTerminal(lines[0] as Parameters<typeof formatForTerminal>[0])).toContain('GET api.github.com/user 200 rule github injected')
    expect(formatForTerminal(lines[1] as Parameters<typeof formatForTerminal>[0])).toMatch(/CONNECT evil\.test 403 +FORBIDDEN \(host-not-allowed\)/)
  })

  test('an attacker-sized host, method, path or reason never makes a large line: each is held and written as <invalid>', async () => {
    const held: string[] = []
    const sink = egressAuditSink({ write: (entry) => held.push(JSON.stringify(entry)) })
    const huge = 'a'.repeat(15_000)
    sink({ session: 's1', method: huge, host: huge, path: `/${huge}`, status: 400, bytesIn: 0, bytesOut: 0, durationMs: 0, injected: false, reason: huge })
    expect(held[0]?.length).toBeLessThan(1_000)
    const log = await AuditLog.open(join(dir, 'audit-huge.log'))
    egressAuditSink(log)({ session: 's1', method: 'CONNECT', host: huge, path: '', status: 400, bytesIn: 0, bytesOut: 0, durationMs: 0, injected: false, reason: 'bad-connect-target' })
    await log.close()
    const written = readFileSync(join(dir, 'audit-huge.log'), 'utf8')
    expect(written.length).toBeLessThan(1_000)
    expect(written).toContain('<invalid>')
  })

  test('a path with quotes, spaces or escapes is written as <invalid>, never raw', () => {
    const line = JSON.parse(
      formatAuditLine({ session: 's', event: 'egress', outcome: 'ok', egress: { method: 'GET', host: 'h.test', path: '/a b"\u001b[31m', status: 200, bytesIn: 0, bytesOut: 0, injected: false } }),
    ) as { egress: { path: string } }
    expect(line.egress.path).toBe('<invalid>')
  })
})
