// What a person reads from `credproxy audit` and what they paste into `credproxy grant`.
import { parseArgs } from 'node:util'
import { describe, expect, test } from 'vitest'
import { formatAuditLine } from '../src/commands/audit.js'
import { AuditLineSchema } from '../src/audit/audit-format.js'
import { generateSessionId, SESSION_ID_PATTERN } from '../src/control/socket-path.js'

describe('session ids', () => {
  test('never start with a dash, so `credproxy grant --session ID` takes them as a value', () => {
    for (let i = 0; i < 500; i++) {
      const id = generateSessionId()
      expect(id).toMatch(SESSION_ID_PATTERN)
      const { values } = parseArgs({ args: ['--session', id, '--key', 'K'], options: { session: { type: 'string' }, key: { type: 'string' } } })
      expect(values.session).toBe(id)
    }
  })
})

describe('credproxy audit, pretty lines', () => {
  const base = { time: '2026-11-22T06:00:11.123Z', session: 'abcdef0123456789abcdef01', peer: { pid: 10, uid: 0, gid: 0 }, outcome: 'ok' }

  test('a request shows its op and target', () => {
    const line = formatAuditLine(AuditLineSchema.parse({ ...base, event: 'request', op: 'get_api_key', key: 'K', outcome: 'NOT_GRANTED' }))
    expect(line).toContain('  get_api_key  ')
    expect(line).toContain('NOT_GRANTED')
  })

  test('a handshake shows its event once', () => {
    const line = formatAuditLine(AuditLineSchema.parse({ ...base, event: 'handshake_ok' }))
    expect(line).toContain('  handshake_ok  ')
    expect(line).not.toContain('handshake_ok:handshake_ok')
  })

  test('a summary line of the audit budget shows how many events it stands for', () => {
    const line = formatAuditLine(AuditLineSchema.parse({ ...base, event: 'request', op: 'get_token', outcome: 'RATE_LIMITED', count: 31_968 }))
    expect(line.endsWith('RATE_LIMITED x31968')).toBe(true)
  })
})
