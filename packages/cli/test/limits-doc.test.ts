// dev-docs/protocol.md "Limits" is what users read: every server limit listed there
// must have the code's name and value, and every server limit in the code a row.
import { readFileSync } from 'node:fs'
import { describe, expect, test } from 'vitest'
import * as refreshCoordinator from '../src/oauth/refresh-coordinator.js'
import * as sessionManager from '../src/oauth/session-manager.js'
import * as auditBudget from '../src/audit/audit-budget.js'
import * as control from '../src/control/control-channel.js'
import * as limits from '../src/broker/limits.js'
import * as locks from '../src/storage/locks.js'

const doc = readFileSync(new URL('../../../dev-docs/protocol.md', import.meta.url), 'utf8')

/** `| \`NAME\` | value |` rows of the doc text from heading up to the next heading of that level or higher. */
function rows(heading: string): Map<string, number> {
  const start = doc.indexOf(heading)
  if (start < 0) throw new Error(`${heading} missing from dev-docs/protocol.md`)
  const rest = doc.slice(start + heading.length)
  const end = rest.search(heading.startsWith('### ') ? /\n##{1,2} / : /\n## /)
  const text = end < 0 ? rest : rest.slice(0, end)
  return new Map([...text.matchAll(/^\| `([A-Z0-9_]+)` \| (\d+) \|/gm)].map((m) => [m[1] ?? '', Number(m[2])]))
}

/** The numeric UPPER_CASE exports of a module. */
function constants(module: object): Map<string, number> {
  return new Map(Object.entries(module).filter((e): e is [string, number] => /^[A-Z0-9_]+$/.test(e[0]) && typeof e[1] === 'number'))
}

// An id size, not a limit anyone can run into.
const NOT_LIMITS = new Set(['SESSION_ID_BYTES'])

describe('dev-docs/protocol.md server limits', () => {
  const server = rows('### Server (`@credproxy/cli`)')
  const all = rows('## 9. Limits')
  const code = new Map([...constants(limits), ...constants(sessionManager), ...constants(control), ...constants(auditBudget)])

  test('every row of the server table names a constant of the code, with its value', () => {
    expect(server.size).toBeGreaterThanOrEqual(13)
    for (const [name, value] of server) {
      expect(code.has(name), `${name} is in the doc but not in the code`).toBe(true)
      expect(code.get(name), name).toBe(value)
    }
  })

  test('every server limit in the code has a row in the Limits section, with its value', () => {
    for (const [name, value] of code) {
      if (NOT_LIMITS.has(name)) continue
      expect(all.get(name), `${name} = ${value} is missing from dev-docs/protocol.md "Limits"`).toBe(value)
    }
  })

  test('the defaults a server is built with are the documented ones', () => {
    expect(limits.DEFAULT_SERVER_LIMITS).toEqual({
      maxInFlightPerConnection: server.get('MAX_IN_FLIGHT_PER_CONNECTION'),
      maxConnectionsPerSession: server.get('MAX_CONNECTIONS_PER_SESSION'),
      maxPendingHandshakesPerSession: server.get('MAX_PENDING_HANDSHAKES_PER_SESSION'),
      handshakeTimeoutMs: all.get('HANDSHAKE_TIMEOUT_MS'),
      failedHandshakeCloseMs: all.get('FAILED_HANDSHAKE_CLOSE_MS'),
      partialFrameTimeoutMs: all.get('PARTIAL_FRAME_TIMEOUT_MS'),
      maxBufferedBytesPerConnection: server.get('MAX_BUFFERED_BYTES_PER_CONNECTION'),
      drainTimeoutMs: server.get('DRAIN_TIMEOUT_MS'),
      rateLimitPerSecond: server.get('RATE_LIMIT_PER_SECOND'),
      rateLimitBurst: server.get('RATE_LIMIT_BURST'),
    })
  })
})

describe('lock waits: one name per meaning, the same value in every doc', () => {
  const docs = ['oauth.md', 'storage.md'].map((name) => [name, readFileSync(new URL(`../../../dev-docs/${name}`, import.meta.url), 'utf8')] as const)
  const waits: Array<[string, number]> = [
    ['REFRESH_LOCK_WAIT_MS', locks.REFRESH_LOCK_WAIT_MS],
    ['WRITE_LOCK_WAIT_MS', locks.WRITE_LOCK_WAIT_MS],
    ['COORDINATED_REFRESH_LOCK_WAIT_MS', refreshCoordinator.COORDINATED_REFRESH_LOCK_WAIT_MS],
  ]

  test('the coordinator does not redefine the store\'s REFRESH_LOCK_WAIT_MS', () => {
    expect(Object.keys(refreshCoordinator)).not.toContain('REFRESH_LOCK_WAIT_MS')
  })

  test.each(waits)('%s is given with its value wherever a doc names it', (name, value) => {
    let mentions = 0
    for (const [file, text] of docs) {
      // `NAME` followed (within the sentence) by its value in seconds, e.g. "`NAME` (30 s)" or "`NAME`, 60 s".
      for (const match of text.matchAll(new RegExp(`\`${name}\`[^.;]*?(\\d+) s\\b`, 'g'))) {
        mentions += 1
        expect(Number(match[1]) * 1000, `${file}: ${match[0]}`).toBe(value)
      }
    }
    expect(mentions).toBeGreaterThan(0)
  })
})
