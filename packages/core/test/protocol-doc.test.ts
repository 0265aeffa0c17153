// dev-docs/protocol.md is normative: these tests keep its numbers, codes, ops and
// core limits in step with the code.
import { readFileSync } from 'node:fs'
import { describe, expect, test } from 'vitest'
import * as core from '../src/index.js'

const doc = readFileSync(new URL('../../../dev-docs/protocol.md', import.meta.url), 'utf8')

function docValue(name: string): string {
  const match = new RegExp(`^${name}\\s*=\\s*([0-9a-f]+)$`, 'm').exec(doc)
  if (!match?.[1]) throw new Error(`${name} not found in dev-docs/protocol.md`)
  return match[1]
}

function section(title: string): string {
  const start = doc.indexOf(title)
  if (start < 0) throw new Error(`section ${title} missing`)
  const end = doc.indexOf('\n## ', start + 1)
  return doc.slice(start, end < 0 ? undefined : end)
}

describe('dev-docs/protocol.md', () => {
  test('the worked v3 example recomputes with the code', () => {
    const secret = Buffer.from(docValue('secret'), 'hex')
    const clientNonce = docValue('clientNonce')
    const serverNonce = docValue('serverNonce')
    expect(secret).toHaveLength(core.SESSION_SECRET_BYTES)
    expect(core.computeServerProof(secret, clientNonce, serverNonce)).toBe(docValue('serverProof'))
    expect(core.computeClientProof(secret, serverNonce, clientNonce)).toBe(docValue('clientProof'))
    expect(`${core.SERVER_PROOF_LABEL}|${clientNonce}|${serverNonce}`).toHaveLength(149)
  })

  test('the hex framing examples are what encodeFrame produces', () => {
    const hexOf = (message: object) => {
      const bytes = core.encodeFrame(message).toString('hex')
      return `${bytes.slice(0, 8)} ${bytes.slice(8)}`
    }
    expect(doc).toContain(hexOf({}))
    expect(doc).toContain(hexOf({ a: 1 }))
    expect(doc).toContain(hexOf({ v: 3, id: '1', op: 'get_token', payload: { provider: 'anthropic' } }))
    expect(() => new core.FrameDecoder().push(Buffer.from('00400001', 'hex'))).toThrow(core.FrameError)
  })

  test('every error code in the registry has a row with a sentence', () => {
    const table = section('## 8. Error codes')
    for (const code of Object.keys(core.ERROR_CODES)) {
      expect(table, code).toMatch(new RegExp(`^\\| \`${code}\` \\| [A-Z].{10,}\\. \\|$`, 'm'))
    }
  })

  test('every op has a row in the operations table with its first version', () => {
    const table = section('## 7. Operations')
    for (const op of Object.keys(core.OP_PAYLOAD_SCHEMAS)) {
      const since = core.OP_MIN_VERSION[op as core.OpName]
      expect(table, op).toMatch(new RegExp(`^\\| \`${op}\` \\| ${since} \\|`, 'm'))
    }
  })

  test('every core limit in the limits tables has its current value', () => {
    const table = section('## 9. Limits')
    const rows = [...table.matchAll(/^\| `([A-Z0-9_]+)` \| (\d+) \|/gm)]
    const listed = new Map(rows.map((m) => [m[1], Number(m[2])]))
    const exported = core as unknown as Record<string, unknown>
    let checked = 0
    for (const [name, value] of listed) {
      if (name === undefined || !(name in exported)) continue // server limits live in @credproxy/cli
      expect(exported[name], name).toBe(value)
      checked++
    }
    expect(checked).toBeGreaterThanOrEqual(20)
    for (const name of ['MAX_FRAME_BYTES', 'PARTIAL_FRAME_TIMEOUT_MS', 'MAX_IN_FLIGHT_REQUESTS', 'DEFAULT_REQUEST_TIMEOUT_MS']) {
      expect(listed.has(name), name).toBe(true)
    }
  })
})
