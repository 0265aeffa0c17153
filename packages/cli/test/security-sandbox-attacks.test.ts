// End to end in real bubblewrap: the attacker runs inside `credproxy run --sandbox bwrap`
// with the session secret, as any sandboxed process. A flood of junk frames cannot wipe
// or pad the audit trail (audit-budget.ts), and held connections cannot lock a
// legitimate client out (two slot budgets, credential-proxy-server.ts). Needs `npm run build`.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeAll, describe, expect, test } from 'vitest'
import { resolvePaths } from '../src/paths.js'
import { auditLogPath, type AuditLine } from '../src/audit/audit-format.js'
import { readAuditEntries } from '../src/audit/audit-reader.js'
import { makeCliHome, removeCliHomes, runCli, type CliHome } from './helpers/cli-runner.js'

const ATTACKER = fileURLToPath(new URL('./fixtures/sandbox-attacker.mjs', import.meta.url))
const PROBE = fileURLToPath(new URL('./fixtures/sandbox-probe.mjs', import.meta.url))
const KEY_VALUE = 'granted-key-value-5e2b7d'
/** As in the reported attack: 320,000 junk frames (enough to rotate 6 x 10 MB files away before). */
const JUNK_FRAMES = 320_000
/** What the whole flood may add to the audit files (the old code wrote ~75 MB). */
const MAX_AUDIT_GROWTH_BYTES = 256 * 1024

afterEach(removeCliHomes)

beforeAll(() => {
  expect(() => readFileSync(fileURLToPath(new URL('../dist/bin.js', import.meta.url)))).not.toThrow()
})

function setup(): Promise<CliHome> {
  return makeCliHome('cp-attack-', async (stores) => {
    await stores.keys.saveKey('K', KEY_VALUE)
  })
}

async function auditLines(env: NodeJS.ProcessEnv): Promise<AuditLine[]> {
  const lines: AuditLine[] = []
  for await (const line of readAuditEntries(auditLogPath(resolvePaths(env)))) lines.push(line)
  return lines
}

function auditBytes(env: NodeJS.ProcessEnv): number {
  const path = auditLogPath(resolvePaths(env))
  const dir = join(path, '..')
  return readdirSync(dir)
    .filter((name) => name.startsWith('audit.log'))
    .reduce((sum, name) => sum + statSync(join(dir, name)).size, 0)
}

const keyRead = (session: string | undefined) => (line: AuditLine) =>
  line.session === session && line.event === 'request' && line.op === 'get_api_key' && line.key === 'K' && line.outcome === 'ok'

describe('attacks from inside bubblewrap', () => {
  test('a junk-frame flood keeps the earlier key reads of both sessions and adds a bounded amount', async () => {
    const { env, cwd } = await setup()
    const first = await runCli(['run', '--sandbox', 'bwrap', '--grant-key', 'K', '--', 'node', PROBE, 'K'], { env, cwd })
    expect(first.code).toBe(0)
    const firstSession = (await auditLines(env)).find((line) => line.event === 'handshake_ok')?.session
    expect(firstSession).toBeDefined()
    const before = auditBytes(env)

    const attack = await runCli(['run', '--sandbox', 'bwrap', '--grant-key', 'K', '--', 'node', ATTACKER, 'audit-flood', 'K', String(JUNK_FRAMES), '8'], { env, cwd })
    expect(attack.code).toBe(0)
    const report = JSON.parse(attack.stdout) as { read: string; answers: number; reconnects: number; codes: Record<string, number> }
    expect(report.read).toBe(KEY_VALUE)
    expect(report.answers).toBe(JUNK_FRAMES)

    const lines = await auditLines(env)
    const attackSession = lines.filter((line) => line.session !== firstSession).at(0)?.session
    // The first session's read and the attacker's own real read, before its flood, are both still there.
    expect(lines.some(keyRead(firstSession))).toBe(true)
    expect(lines.some(keyRead(attackSession))).toBe(true)
    const growth = auditBytes(env) - before
    expect(growth).toBeLessThan(MAX_AUDIT_GROWTH_BYTES)
    // Nothing is hidden: the summaries count every refused frame.
    const refused = lines
      .filter((line) => line.session === attackSession && line.event === 'request' && line.outcome !== 'ok')
      .reduce((sum, line) => sum + (line.count ?? 1), 0)
    expect(refused).toBe(JUNK_FRAMES + report.reconnects)
    console.log(`audit flood: ${JUNK_FRAMES} junk frames + ${report.reconnects} reconnects -> +${(growth / 1024).toFixed(1)} KiB of audit lines (${lines.length} lines in all)`)
  }, 180_000)

  test.each(['pending', 'authenticated'])('64 held %s connections (reopened when closed) never lock a legitimate client out', async (kind) => {
    const { env, cwd } = await setup()
    const result = await runCli(['run', '--sandbox', 'bwrap', '--grant-key', 'K', '--', 'node', ATTACKER, 'hold', kind, '64', '3000', 'K'], { env, cwd })
    expect(result.code).toBe(0)
    const report = JSON.parse(result.stdout) as { held: number; attempts: number; codes: Record<string, number> }
    expect(report.held).toBeGreaterThanOrEqual(64)
    expect(report.attempts).toBeGreaterThan(10)
    expect(report.codes).toEqual({ ok: report.attempts })
  }, 60_000)
})
