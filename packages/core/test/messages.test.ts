import { describe, expect, test } from 'vitest'
import {
  HandshakeFinishRequestSchema,
  HandshakeRequestSchema,
  HandshakeResponseDataSchema,
  isOpName,
  OP_DATA_SCHEMAS,
  OP_MIN_VERSION,
  OP_PAYLOAD_SCHEMAS,
  RequestEnvelopeSchema,
  ResponseSchema,
} from '../src/protocol/messages.js'
import { isBucketName, isKeyName, isProviderName } from '../src/protocol/names.js'

// The operation table of the design brief (PROTOCOL.md), with one valid payload and data each.
const TOKEN = { access_token: 'at', expiry: 1_900_000_000, token_type: 'Bearer' }
const SESSION = 'A'.repeat(32)
const SPEC: Record<string, { payload: unknown; data: unknown; since: number }> = {
  get_token: { payload: { provider: 'anthropic', bucket: 'work' }, data: TOKEN, since: 1 },
  save_token: { payload: { provider: 'anthropic', token: TOKEN }, data: {}, since: 1 },
  remove_token: { payload: { provider: 'anthropic' }, data: {}, since: 1 },
  list_providers: { payload: {}, data: { providers: ['anthropic'] }, since: 1 },
  list_buckets: { payload: { provider: 'anthropic' }, data: { buckets: ['default'] }, since: 1 },
  get_bucket_stats: { payload: { provider: 'a' }, data: { bucket: 'default', requestCount: 3, percentage: 100 }, since: 1 },
  get_api_key: { payload: { name: 'OPENAI_API_KEY' }, data: { key: 'sk-x' }, since: 1 },
  list_api_keys: { payload: {}, data: { keys: ['OPENAI_API_KEY'] }, since: 1 },
  has_api_key: { payload: { name: 'OPENAI_API_KEY' }, data: { exists: true }, since: 1 },
  oauth_initiate: {
    payload: { provider: 'github' },
    data: { flow_type: 'device_code', session_id: SESSION, pollIntervalMs: 5000, verification_uri: 'https://x/device', user_code: 'ABCD-EFGH' },
    since: 1,
  },
  oauth_exchange: { payload: { session_id: SESSION, code: 'c0de' }, data: TOKEN, since: 1 },
  oauth_poll: { payload: { session_id: SESSION }, data: { status: 'pending', interval: 10 }, since: 1 },
  oauth_cancel: { payload: { session_id: SESSION }, data: {}, since: 1 },
  refresh_token: { payload: { provider: 'anthropic' }, data: TOKEN, since: 1 },
  cancel: { payload: { targetId: '7' }, data: { cancelled: true }, since: 2 },
  session_info: { payload: {}, data: { session: 's1', grants: { providers: ['a'] }, limits: { maxInFlight: 16 } }, since: 3 },
}

describe('operations', () => {
  test('every op of the spec has a payload schema, a data schema and a first version', () => {
    expect(Object.keys(OP_PAYLOAD_SCHEMAS).sort()).toEqual(Object.keys(SPEC).sort())
    expect(Object.keys(OP_DATA_SCHEMAS).sort()).toEqual(Object.keys(SPEC).sort())
    for (const [op, spec] of Object.entries(SPEC)) {
      expect(isOpName(op)).toBe(true)
      expect(OP_MIN_VERSION[op as keyof typeof OP_MIN_VERSION]).toBe(spec.since)
    }
  })

  test.each(Object.entries(SPEC))('%s accepts the spec example and rejects extra keys', (op, spec) => {
    const name = op as keyof typeof OP_PAYLOAD_SCHEMAS
    expect(OP_PAYLOAD_SCHEMAS[name].safeParse(spec.payload).success).toBe(true)
    expect(OP_DATA_SCHEMAS[name].safeParse(spec.data).success).toBe(true)
    expect(OP_PAYLOAD_SCHEMAS[name].safeParse({ ...(spec.payload as object), extra: 1 }).success).toBe(false)
  })

  test('names follow the name rules', () => {
    expect(OP_PAYLOAD_SCHEMAS.get_token.safeParse({ provider: 'me@corp.example' }).success).toBe(true)
    expect(OP_PAYLOAD_SCHEMAS.get_token.safeParse({ provider: 'a/b' }).success).toBe(false)
    expect(OP_PAYLOAD_SCHEMAS.get_token.safeParse({ provider: 'x'.repeat(65) }).success).toBe(false)
    expect(OP_PAYLOAD_SCHEMAS.get_api_key.safeParse({ name: 'A@B' }).success).toBe(false)
    expect(OP_PAYLOAD_SCHEMAS.get_token.safeParse({ provider: 'a', bucket: '' }).success).toBe(false)
  })

  test.each(['__proto__', 'constructor', 'prototype'])('the reserved name %s is no provider, bucket or key name', (name) => {
    expect(isProviderName(name) || isBucketName(name) || isKeyName(name)).toBe(false)
    expect(OP_PAYLOAD_SCHEMAS.get_token.safeParse({ provider: name }).success).toBe(false)
    expect(OP_PAYLOAD_SCHEMAS.remove_token.safeParse({ provider: 'a', bucket: name }).success).toBe(false)
    expect(OP_PAYLOAD_SCHEMAS.get_api_key.safeParse({ name }).success).toBe(false)
    // Only the exact name is reserved; names that merely contain it stay valid.
    expect(isProviderName(`${name}x`) && isBucketName(`x${name}`) && isKeyName(`${name}.1`)).toBe(true)
  })

  test('payloads with __proto__ or constructor keys are refused', () => {
    const proto = JSON.parse('{"provider":"a","__proto__":{"x":1}}') as unknown
    expect(OP_PAYLOAD_SCHEMAS.get_token.safeParse(proto).success).toBe(false)
    expect(OP_PAYLOAD_SCHEMAS.list_providers.safeParse({ constructor: 1 }).success).toBe(false)
    expect(isOpName('toString')).toBe(false)
    expect(isOpName('__proto__')).toBe(false)
  })

  test('tokens keep provider extras', () => {
    const parsed = OP_DATA_SCHEMAS.get_token.parse({ ...TOKEN, id_token: 'x', resource: 'r' })
    expect(parsed).toMatchObject({ id_token: 'x', resource: 'r' })
  })

  test('oauth_poll: pending (with interval after slow_down) or complete with a token', () => {
    expect(OP_DATA_SCHEMAS.oauth_poll.safeParse({ status: 'pending' }).success).toBe(true)
    expect(OP_DATA_SCHEMAS.oauth_poll.safeParse({ status: 'complete', token: TOKEN }).success).toBe(true)
    expect(OP_DATA_SCHEMAS.oauth_poll.safeParse({ status: 'complete' }).success).toBe(false)
    expect(OP_DATA_SCHEMAS.oauth_poll.safeParse({ status: 'done' }).success).toBe(false)
  })
})

describe('envelopes', () => {
  test('handshake requests of v2 and v3', () => {
    expect(
      HandshakeRequestSchema.safeParse({ v: 2, op: 'handshake', payload: { minVersion: 1, maxVersion: 2, capabilityToken: 'a'.repeat(64) } })
        .success,
    ).toBe(true)
    expect(
      HandshakeRequestSchema.safeParse({ v: 3, op: 'handshake', payload: { minVersion: 1, maxVersion: 3, clientNonce: 'ab'.repeat(32) } }).success,
    ).toBe(true)
    expect(HandshakeRequestSchema.safeParse({ op: 'handshake', payload: { minVersion: 1, maxVersion: 3, clientNonce: 'XY' } }).success).toBe(false)
    expect(HandshakeFinishRequestSchema.safeParse({ v: 3, op: 'handshake_finish', payload: { clientProof: 'cd'.repeat(32) } }).success).toBe(true)
    expect(HandshakeResponseDataSchema.safeParse({ version: 3, serverNonce: 'ab'.repeat(32), serverProof: 'nothex' }).success).toBe(false)
  })

  test('requests need an id; responses need neither v nor op', () => {
    expect(RequestEnvelopeSchema.safeParse({ v: 3, op: 'get_token', payload: {} }).success).toBe(false)
    expect(RequestEnvelopeSchema.safeParse({ v: 3, id: '1', op: 'get_token', payload: {} }).success).toBe(true)
    expect(ResponseSchema.safeParse({ id: '1', ok: true, data: {} }).success).toBe(true)
    expect(ResponseSchema.safeParse({ id: '1', ok: false, code: 'RATE_LIMITED', error: 'x', retryAfter: 1 }).success).toBe(true)
    expect(ResponseSchema.safeParse({ id: '1', ok: false }).success).toBe(false)
  })
})
