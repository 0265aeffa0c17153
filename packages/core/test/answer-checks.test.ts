// The client's hand-written checks (client/answer-checks.ts) must accept exactly what
// the zod schemas accept: the broker validates with zod, the sandboxed client without.
import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { asFinishData, asHandshakeData, asResponse, isValidOpData, payloadProblem } from '../src/client/answer-checks.js'
import {
  HandshakeFinishDataSchema,
  HandshakeResponseDataSchema,
  OP_DATA_SCHEMAS,
  OP_PAYLOAD_SCHEMAS,
  ResponseSchema,
  type OpName,
} from '../src/protocol/messages.js'

const TOKEN = { access_token: 'at', refresh_token: 'rt', expiry: 1_900_000_000, token_type: 'Bearer', scope: 's' }
const SESSION = 'A'.repeat(32)
const HEX = 'a'.repeat(64)
const VALID: Record<OpName, { payload: Record<string, unknown>; data: Record<string, unknown> }> = {
  get_token: { payload: { provider: 'anthropic', bucket: 'work' }, data: TOKEN },
  save_token: { payload: { provider: 'anthropic', bucket: 'b', token: TOKEN }, data: {} },
  remove_token: { payload: { provider: 'anthropic' }, data: {} },
  list_providers: { payload: {}, data: { providers: ['anthropic'] } },
  list_buckets: { payload: { provider: 'anthropic' }, data: { buckets: ['default'] } },
  get_bucket_stats: { payload: { provider: 'a' }, data: { bucket: 'default', requestCount: 3, percentage: 100, lastUsed: 5 } },
  get_api_key: { payload: { name: 'OPENAI_API_KEY' }, data: { key: 'sk-x' } },
  list_api_keys: { payload: {}, data: { keys: ['OPENAI_API_KEY'] } },
  has_api_key: { payload: { name: 'OPENAI_API_KEY' }, data: { exists: true } },
  oauth_initiate: {
    payload: { provider: 'github' },
    data: { flow_type: 'device_code', session_id: SESSION, pollIntervalMs: 5000, auth_url: 'u', verification_uri: 'v', user_code: 'c', verification_uri_complete: 'w' },
  },
  oauth_exchange: { payload: { session_id: SESSION, code: 'abc' }, data: TOKEN },
  oauth_poll: { payload: { session_id: SESSION }, data: { status: 'complete', token: TOKEN } },
  oauth_cancel: { payload: { session_id: SESSION }, data: {} },
  refresh_token: { payload: { provider: 'github', bucket: 'default' }, data: TOKEN },
  cancel: { payload: { targetId: '7' }, data: { cancelled: true } },
  session_info: { payload: {}, data: { session: 's', grants: {}, limits: { maxInFlight: 16 } } },
}
const OPS = Object.keys(VALID) as OpName[]

// Values that hit the edges of every rule: wrong types, empty and overlong strings,
// reserved names, non-integers, negative numbers, arrays for objects.
const edgeValue = fc.oneof(
  fc.constantFrom<unknown>(undefined, null, '', 'x', 'a'.repeat(65), 'a'.repeat(4097), '__proto__', 'constructor', 'bad name', 'A'.repeat(15), HEX, HEX.toUpperCase()),
  fc.constantFrom<unknown>(0, -1, 1.5, 3, 1_000_001, true, false, [], ['x'], [1], {}, { a: 1 }, { a: 'x' }, TOKEN, { ...TOKEN, expiry: 'x' }),
  fc.constantFrom<unknown>('pending', 'complete', 'device_code', 'pkce_redirect', 'other', { status: 'pending' }, { status: 'pending', interval: 'x' }),
  fc.jsonValue({ maxDepth: 2 }),
)

/** A valid object with some fields replaced, removed or added. */
function mutated(base: Record<string, unknown>): fc.Arbitrary<unknown> {
  const keys = [...Object.keys(base), 'extra', 'id', 'ok', 'code']
  return fc.oneof(
    { arbitrary: fc.dictionary(fc.constantFrom(...keys), edgeValue, { maxKeys: 3 }).map((changes) => ({ ...base, ...changes })), weight: 4 },
    { arbitrary: fc.subarray(Object.keys(base)).map((drop) => Object.fromEntries(Object.entries(base).filter(([k]) => !drop.includes(k)))), weight: 2 },
    { arbitrary: edgeValue, weight: 1 },
  )
}

describe('hand-written checks agree with the zod schemas', () => {
  test.each(OPS)('%s payload and data', (op) => {
    const { payload, data } = VALID[op]
    expect(payloadProblem(op, payload)).toBeUndefined()
    expect(isValidOpData(op, data)).toBe(true)
    fc.assert(
      fc.property(mutated(payload), (value) => {
        expect(payloadProblem(op, value) === undefined).toBe(OP_PAYLOAD_SCHEMAS[op].safeParse(value).success)
      }),
      { numRuns: 300 },
    )
    fc.assert(
      fc.property(mutated(data), (value) => {
        expect(isValidOpData(op, value)).toBe(OP_DATA_SCHEMAS[op].safeParse(value).success)
      }),
      { numRuns: 300 },
    )
  })

  test('oauth_poll pending answers', () => {
    fc.assert(
      fc.property(mutated({ status: 'pending', interval: 5 }), (value) => {
        expect(isValidOpData('oauth_poll', value)).toBe(OP_DATA_SCHEMAS.oauth_poll.safeParse(value).success)
      }),
      { numRuns: 300 },
    )
  })

  test('responses, handshake answers and handshake_finish answers', () => {
    const cases: Array<[Record<string, unknown>, (v: unknown) => boolean, (v: unknown) => boolean]> = [
      [{ id: '1', ok: true, data: { a: 1 } }, (v) => asResponse(v) !== undefined, (v) => ResponseSchema.safeParse(v).success],
      [{ id: '1', ok: false, code: 'RATE_LIMITED', error: 'slow down', retryAfter: 250 }, (v) => asResponse(v) !== undefined, (v) => ResponseSchema.safeParse(v).success],
      [{ version: 3, serverNonce: HEX, serverProof: HEX }, (v) => asHandshakeData(v) !== undefined, (v) => HandshakeResponseDataSchema.safeParse(v).success],
      [{ session: 's' }, (v) => asFinishData(v) !== undefined, (v) => HandshakeFinishDataSchema.safeParse(v).success],
    ]
    for (const [base, hand, zod] of cases) {
      expect(hand(base)).toBe(true)
      fc.assert(fc.property(mutated(base), (value) => {
        expect(hand(value)).toBe(zod(value))
      }), { numRuns: 500 })
    }
  })

  test('a token with scope: null (llxprt-code sends it) is a token, on both sides', () => {
    expect(isValidOpData('get_token', { ...TOKEN, scope: null })).toBe(true)
    expect(payloadProblem('save_token', { provider: 'p', token: { ...TOKEN, scope: null } })).toBeUndefined()
    expect(isValidOpData('get_token', { ...TOKEN, scope: 1 })).toBe(false)
  })

  test('a bad payload names the failing field', () => {
    expect(payloadProblem('get_api_key', { name: 'bad name' })).toBe('name')
    expect(payloadProblem('get_token', { provider: 'p', extra: 1 })).toBe('extra')
    expect(payloadProblem('save_token', { provider: 'p', token: { ...TOKEN, expiry: 'soon' } })).toBe('token.expiry')
    expect(payloadProblem('list_api_keys', null)).toBe('(payload)')
  })
})
