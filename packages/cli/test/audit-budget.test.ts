// The per-session audit budget (audit-budget.ts): a flood of refusals becomes a few
// summary lines with counts, successful reads keep their own budget, and one
// session's lifetime output is capped. End to end in bubblewrap: security-audit-flood.test.ts.
import { describe, expect, test } from 'vitest'
import {
  AUDIT_NOISE_LINES_PER_INTERVAL,
  AUDIT_RECORD_LINES_PER_INTERVAL,
  AUDIT_SUMMARY_KINDS_PER_INTERVAL,
  AuditBudget,
} from '../src/audit/audit-budget.js'
import type { AuditEntry } from '../src/broker/hooks.js'

const PEER = { pid: 42, uid: 1000, gid: 1000 }
const refused = (outcome: AuditEntry['outcome'] = 'RATE_LIMITED', op = 'get_token'): AuditEntry => ({ session: 's1', event: 'request', op, outcome, peer: PEER, durationMs: 0.1 })
const keyRead = (key = 'K'): AuditEntry => ({ session: 's1', event: 'request', op: 'get_api_key', key, outcome: 'ok', peer: PEER })

function budget(options: ConstructorParameters<typeof AuditBudget>[1] = {}): { sink: AuditEntry[]; budget: AuditBudget; clock: { now: number } } {
  const sink: AuditEntry[] = []
  const clock = { now: 0 }
  return { sink, clock, budget: new AuditBudget({ write: (e) => sink.push(e) }, { now: () => clock.now, ...options }) }
}

const counted = (lines: AuditEntry[], match: (e: AuditEntry) => boolean): number => lines.filter(match).reduce((n, e) => n + (e.count ?? 1), 0)

describe('AuditBudget', () => {
  test('egress lines: a flood of refused requests is summarized, and each forwarded request during it is written', () => {
    const { sink, budget: b } = budget()
    const egress = (status: number, reason?: string): AuditEntry => ({
      session: 's1',
      event: 'egress',
      outcome: reason === undefined ? 'ok' : 'FORBIDDEN',
      ...(reason === undefined ? {} : { reason }),
      egress: { method: 'GET', host: 'api.test', path: '/', status, bytesIn: 0, bytesOut: 0, injected: reason === undefined },
    })
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 1_000; i++) b.write(egress(403, 'host-not-allowed'))
      b.write(egress(200))
    }
    b.flush()
    expect(sink.filter((e) => e.outcome === 'ok')).toHaveLength(20)
    expect(sink.length).toBeLessThan(20 + AUDIT_NOISE_LINES_PER_INTERVAL + 5)
    expect(counted(sink, (e) => e.reason === 'host-not-allowed')).toBe(20_000)
  })

  test('100,000 refusals in one interval: the first few line by line, the rest as one summary line with the count', () => {
    const { sink, budget: b } = budget()
    for (let i = 0; i < 100_000; i++) b.write(refused())
    expect(sink).toHaveLength(AUDIT_NOISE_LINES_PER_INTERVAL)
    b.flush()
    expect(sink).toHaveLength(AUDIT_NOISE_LINES_PER_INTERVAL + 1)
    const summary = sink.at(-1)
    expect(summary).toMatchObject({ event: 'request', op: 'get_token', outcome: 'RATE_LIMITED', count: 100_000 - AUDIT_NOISE_LINES_PER_INTERVAL })
    expect(summary?.durationMs).toBeUndefined()
    expect(counted(sink, (e) => e.outcome === 'RATE_LIMITED')).toBe(100_000)
  })

  test('a refusal flood never uses the room of successful reads: each read during it is written', () => {
    const { sink, budget: b } = budget()
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 1_000; i++) b.write(refused('INVALID_REQUEST', 'get_token'))
      b.write(keyRead(`K${round}`))
    }
    expect(sink.filter((e) => e.outcome === 'ok').map((e) => e.key)).toEqual(Array.from({ length: 50 }, (_, i) => `K${i}`))
  })

  test('one summary per kind (event, op, outcome, reason) per interval; a new interval writes line by line again', () => {
    const { sink, budget: b, clock } = budget({ intervalMs: 1_000 })
    for (let i = 0; i < 500; i++) {
      b.write(refused('RATE_LIMITED'))
      b.write(refused('NOT_GRANTED', 'get_api_key'))
      b.write({ session: 's1', event: 'handshake_failed', outcome: 'UNAUTHORIZED', reason: 'bad-proof', peer: PEER })
    }
    clock.now = 1_000
    b.write(refused('NOT_GRANTED', 'get_api_key'))
    const summaries = sink.filter((e) => e.count !== undefined)
    expect(summaries.map((e) => `${e.event}/${e.op ?? '-'}/${e.outcome}/${e.reason ?? '-'}`).sort()).toEqual([
      'handshake_failed/-/UNAUTHORIZED/bad-proof',
      'request/get_api_key/NOT_GRANTED/-',
      'request/get_token/RATE_LIMITED/-',
    ])
    expect(sink.at(-1)).toMatchObject({ outcome: 'NOT_GRANTED', op: 'get_api_key' })
    expect(sink.at(-1)?.count).toBeUndefined()
    expect(counted(sink, () => true)).toBe(1_501)
  })

  test('summary kinds are bounded: peer-chosen names never make new kinds, and past the cap kinds fold by event', () => {
    const { sink, budget: b } = budget({ noiseLinesPerInterval: 1 })
    for (let i = 0; i < 10_000; i++) b.write({ ...refused('NOT_GRANTED', 'get_api_key'), key: `KEY_${i}` })
    const ops = ['get_token', 'get_api_key', 'list_providers', 'save_token', 'remove_token', 'refresh_token', 'has_api_key']
    const codes = ['RATE_LIMITED', 'INVALID_REQUEST', 'NOT_GRANTED', 'NOT_FOUND', 'RESOURCE_EXHAUSTED', 'CANCELLED', 'INTERNAL_ERROR'] as const
    for (const op of ops) for (const code of codes) for (const reason of ['a', 'b']) b.write({ ...refused(code, op), reason })
    b.flush()
    expect(sink.length).toBeLessThanOrEqual(1 + AUDIT_SUMMARY_KINDS_PER_INTERVAL + 1)
    expect(counted(sink, () => true)).toBe(10_000 + ops.length * codes.length * 2)
  })

  test('a session that keeps flooding reaches its lifetime cap: after it, only summaries', () => {
    const { sink, budget: b, clock } = budget({ intervalMs: 1_000, sessionMaxLines: 100 })
    for (let interval = 0; interval < 20; interval++) {
      clock.now = interval * 1_000
      for (let i = 0; i < AUDIT_RECORD_LINES_PER_INTERVAL; i++) b.write(keyRead())
      for (let i = 0; i < AUDIT_NOISE_LINES_PER_INTERVAL; i++) b.write(refused())
    }
    b.flush()
    expect(sink.filter((e) => e.count === undefined)).toHaveLength(100)
    // Two kinds (read, refused) per interval after the cap.
    expect(sink.filter((e) => e.count !== undefined).length).toBeLessThanOrEqual(2 * 20)
    expect(counted(sink, () => true)).toBe(20 * (AUDIT_RECORD_LINES_PER_INTERVAL + AUDIT_NOISE_LINES_PER_INTERVAL))
  })

  test('the summaries of an interval are written when it ends, without further events', async () => {
    const { sink, budget: b, clock } = budget({ intervalMs: 20, noiseLinesPerInterval: 1 })
    b.write(refused())
    b.write(refused())
    expect(sink).toHaveLength(1)
    clock.now = 20
    await new Promise((resolve) => setTimeout(resolve, 60))
    expect(sink).toHaveLength(2)
    expect(sink[1]).toMatchObject({ count: 1 })
  })
})
