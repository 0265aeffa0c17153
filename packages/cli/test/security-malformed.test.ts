// Must show: every op with malformed payloads (wrong types, extra keys, __proto__,
// constructor, huge strings) and ops named like Object.prototype members get
// INVALID_REQUEST, nothing is polluted, and the server keeps serving.
import { OP_PAYLOAD_SCHEMAS } from '@credproxy/core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { auditCount, startSecureSession, type SecureSession } from './helpers/security-helpers.js'
import type { Frame, RawClient } from './helpers/server-raw-client.js'

const ALL = { providers: [{ provider: '*' }], keys: ['*'], capabilities: ['read' as const, 'login' as const, 'save' as const] }
const HUGE = 'A'.repeat(1_000_000)
const OPS = Object.keys(OP_PAYLOAD_SCHEMAS)

/** Payload JSON texts that must never pass, for an op whose valid payload has these fields. */
function badPayloads(op: string): string[] {
  const common = [
    '"just a string"',
    '42',
    'true',
    '[]',
    '{"__proto__":{"polluted":true}}',
    '{"constructor":{"prototype":{"polluted":true}}}',
    '{"unexpected":1}',
  ]
  const byField: Record<string, string[]> = {
    provider: ['{"provider":42}', `{"provider":"${HUGE}"}`, '{"provider":"../etc"}', '{"provider":"anthropic","extra":1}', '{"provider":"anthropic","__proto__":{"x":1}}'],
    name: ['{"name":["A"]}', `{"name":"${HUGE}"}`, '{"name":"a b"}', '{"name":"K","constructor":1}'],
    session_id: ['{"session_id":1}', `{"session_id":"${HUGE}"}`, '{"session_id":"abcdefghijklmnop","code":"x","extra":1}'],
    targetId: ['{"targetId":{}}', `{"targetId":"${HUGE}"}`],
  }
  const extra: Record<string, string[]> = {
    save_token: ['{"provider":"anthropic","token":{"access_token":1,"expiry":"soon","token_type":"Bearer"}}', '{"provider":"anthropic","token":"x"}'],
    oauth_exchange: ['{"session_id":"abcdefghijklmnop","code":7}', `{"session_id":"abcdefghijklmnop","code":"${HUGE}"}`],
  }
  const shape = OP_PAYLOAD_SCHEMAS[op as keyof typeof OP_PAYLOAD_SCHEMAS].shape as Record<string, unknown>
  const fields = Object.keys(shape)
  return [...common, ...fields.flatMap((field) => byField[field] ?? []), ...(extra[op] ?? [])]
}

let session: SecureSession
let raw: RawClient
let sequence = 0

beforeAll(async () => {
  // The rate limit is its own test; here it would only hide what is being checked.
  session = await startSecureSession({ grants: ALL, limits: { rateLimitPerSecond: 1_000_000, rateLimitBurst: 1_000_000 } })
  await session.stores.tokens.saveToken('anthropic', { access_token: 'at-ok', expiry: 4_000_000_000, token_type: 'Bearer' })
  raw = await session.rawClient()
})
afterAll(async () => {
  await session.cleanup()
})

/** Send one request whose payload is raw JSON text and return the answer. */
async function send(op: string, payloadJson: string): Promise<Frame> {
  const id = `m${++sequence}`
  const body = Buffer.from(`{"v":3,"id":${JSON.stringify(id)},"op":${JSON.stringify(op)},"payload":${payloadJson}}`, 'utf8')
  const header = Buffer.alloc(4)
  header.writeUInt32BE(body.length)
  raw.sendRaw(Buffer.concat([header, body]))
  return raw.answerTo(id)
}

describe('malformed payloads', () => {
  test.each(OPS)('%s: every malformed payload gets INVALID_REQUEST', async (op) => {
    for (const payload of badPayloads(op)) {
      const answer = await send(op, payload)
      expect(answer, `${op} ${payload.slice(0, 60)}`).toMatchObject({ ok: false, code: 'INVALID_REQUEST' })
      expect(String(answer['error']).length).toBeLessThan(300)
    }
  })

  test.each(['toString', '__proto__', 'constructor', 'hasOwnProperty', 'valueOf', '__defineGetter__', 'isPrototypeOf'])(
    'an op named %s gets INVALID_REQUEST',
    async (op) => {
      expect(await send(op, '{}')).toMatchObject({ ok: false, code: 'INVALID_REQUEST' })
    },
  )

  test('nothing was polluted and the same connection is still served', async () => {
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined()
    expect(Object.prototype).not.toHaveProperty('x')
    expect(await send('get_token', '{"provider":"anthropic"}')).toMatchObject({ ok: true, data: { access_token: 'at-ok' } })
    expect(raw.closed).toBe(false)
    const lines = await session.auditLines()
    // Counted, not written one line each (audit-budget.ts): the summaries hold the rest.
    expect(auditCount(lines, (line) => line.outcome === 'INVALID_REQUEST')).toBeGreaterThan(OPS.length * 7)
    expect(lines.length).toBeLessThan(OPS.length * 7)
    // Peer-chosen op names never reach the audit file as text.
    expect(lines.some((line) => line.op === 'toString' || line.op === '__proto__')).toBe(false)
  })

  test.each(['list_providers', 'list_api_keys', 'session_info', 'get_token'])(
    '%s: a null payload gets INVALID_REQUEST; only a missing one stands for {}',
    async (op) => {
      expect(await send(op, 'null')).toMatchObject({ ok: false, code: 'INVALID_REQUEST' })
      const id = `m${++sequence}`
      raw.send({ v: 3, id, op })
      const missing = await raw.answerTo(id)
      if (op === 'get_token') expect(missing).toMatchObject({ ok: false, code: 'INVALID_REQUEST' })
      else expect(missing).toMatchObject({ ok: true })
    },
  )

  test('reserved names (__proto__, constructor, prototype) get INVALID_REQUEST and leave Object and its prototype intact', async () => {
    const answers = [
      await send('remove_token', '{"provider":"__proto__","bucket":"hasOwnProperty"}'),
      await send('remove_token', '{"provider":"constructor","bucket":"hasOwn"}'),
      await send('remove_token', '{"provider":"anthropic","bucket":"__proto__"}'),
      await send('save_token', '{"provider":"constructor","bucket":"prototype","token":{"access_token":"x","expiry":1,"token_type":"Bearer"}}'),
      await send('get_token', '{"provider":"prototype"}'),
      await send('get_bucket_stats', '{"provider":"__proto__","bucket":"toString"}'),
      await send('get_api_key', '{"name":"constructor"}'),
    ]
    for (const answer of answers) expect(answer).toMatchObject({ ok: false, code: 'INVALID_REQUEST' })
    expect(typeof Object.prototype.hasOwnProperty).toBe('function')
    expect(typeof Object.prototype.toString).toBe('function')
    expect(typeof Object.hasOwn).toBe('function')
    expect(await send('get_token', '{"provider":"anthropic"}')).toMatchObject({ ok: true })
  })

  test('a request without a usable id closes only that connection', async () => {
    const other = await session.rawClient()
    other.send({ v: 3, id: 17, op: 'get_token', payload: { provider: 'anthropic' } })
    await other.waitClosed()
    expect(await send('list_providers', '{}')).toMatchObject({ ok: true })
  })
})
