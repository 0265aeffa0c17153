// The hand-written checks of storage/json-checks.ts and envelope.ts accept exactly what the
// zod schemas they replaced accepted (core's OAuthTokenSchema; the envelope schema, kept
// here as it was), and name the same first bad field, over valid files and mutations of them.
import { OAuthTokenSchema } from '@credproxy/core'
import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import * as z from 'zod'
import { ENVELOPE_FORMAT, envelopeProblem } from '../src/storage/envelope.js'
import { tokenProblem } from '../src/storage/json-checks.js'

const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/)
const sealed = { cipher: z.literal('aes-256-gcm'), iv: base64, tag: base64, ciphertext: base64 }
const OldEnvelopeSchema = z.discriminatedUnion('version', [
  z.strictObject({ format: z.literal(ENVELOPE_FORMAT), version: z.literal(2), kdf: z.strictObject({ name: z.literal('hkdf-sha256'), salt: base64 }), ...sealed }),
  z.strictObject({
    format: z.literal(ENVELOPE_FORMAT),
    version: z.literal(1),
    kdf: z.strictObject({
      name: z.literal('scrypt'),
      N: z.number().int().min(2).max(2 ** 20),
      r: z.number().int().min(1).max(32),
      p: z.number().int().min(1).max(16),
      salt: base64,
    }),
    ...sealed,
  }),
])

const SEALED = { cipher: 'aes-256-gcm', iv: 'AAAAAAAAAAAAAAAA', tag: 'AAAAAAAAAAAAAAAAAAAAAA==', ciphertext: 'Zm9v' }
const ENVELOPES: unknown[] = [
  { format: ENVELOPE_FORMAT, version: 2, kdf: { name: 'hkdf-sha256', salt: 'c2FsdA==' }, ...SEALED },
  { format: ENVELOPE_FORMAT, version: 1, kdf: { name: 'scrypt', N: 16384, r: 8, p: 1, salt: 'c2FsdA==' }, ...SEALED },
]
const TOKENS: unknown[] = [
  { access_token: 'at', token_type: 'Bearer', expiry: 1_700_000_000 },
  { access_token: 'at', refresh_token: 'rt', token_type: 'Bearer', expiry: 1.5, scope: 'a b', id_token: 'x', extra: { nested: true } },
]
/** Values a field may be mutated to: wrong types, empty, at and past each bound, odd strings. */
const EDGES: unknown[] = [undefined, null, '', 'x', 'Zm9v', '!!', 0, 1, 2, -1, 1.5, 2 ** 20, 2 ** 20 + 1, 32, 33, 16, 17, Infinity, NaN, true, [], {}]
const NAMES: unknown[] = ['hkdf-sha256', 'scrypt', 'aes-256-gcm', ENVELOPE_FORMAT]
const ODD = fc.oneof(fc.constantFrom(...EDGES, ...NAMES), fc.string(), fc.integer())
const FIELD_LIST = [
  ['format'], ['version'], ['kdf'], ['kdf', 'name'], ['kdf', 'salt'], ['kdf', 'N'], ['kdf', 'r'], ['kdf', 'p'], ['kdf', 'extra'],
  ['cipher'], ['iv'], ['tag'], ['ciphertext'], ['extra'],
  ['access_token'], ['refresh_token'], ['token_type'], ['expiry'], ['scope'],
]

/** Every sample x every field x every edge value, then random ones. */
function eachMutation(samples: unknown[], check: (changed: unknown) => void): void {
  for (const sample of samples) for (const path of FIELD_LIST) for (const value of [...EDGES, ...NAMES]) check(mutate(sample, path, value))
  fc.assert(fc.property(fc.constantFrom(...samples), fc.constantFrom(...FIELD_LIST), ODD, (sample, path, value) => check(mutate(sample, path, value))), { numRuns: 1_000 })
}

/** value with one field (at a path of up to two keys, possibly new) set to another value or removed. */
function mutate(value: unknown, path: string[], replacement: unknown): unknown {
  const copy = structuredClone(value) as Record<string, unknown>
  let target = copy
  for (const key of path.slice(0, -1)) {
    const next = target[key]
    if (typeof next !== 'object' || next === null) return copy
    target = next as Record<string, unknown>
  }
  const last = path.at(-1) as string
  if (replacement === undefined) delete target[last]
  else target[last] = replacement
  return copy
}

function zodField(result: { success: boolean; error?: { issues: Array<{ path: PropertyKey[] }> } }): string | undefined {
  return result.success ? undefined : (result.error?.issues[0]?.path.map(String).join('.') ?? '')
}

describe('hand-written storage checks match the zod schemas they replaced', () => {
  test('envelopes: same verdict, same first bad field', () => {
    for (const envelope of ENVELOPES) expect(envelopeProblem(envelope)).toBeUndefined()
    eachMutation(ENVELOPES, (changed) => {
      // zod names an unknown key at the top of its object ('' or 'kdf'); so do we.
      expect(envelopeProblem(changed)).toBe(zodField(OldEnvelopeSchema.safeParse(changed)))
    })
    for (const odd of [null, [], 'x', 1]) expect(envelopeProblem(odd)).toBe('')
  })

  test('tokens: same verdict, same first bad field', () => {
    for (const token of TOKENS) expect(tokenProblem(token)).toBeUndefined()
    eachMutation(TOKENS, (changed) => {
      expect(tokenProblem(changed)?.field).toBe(zodField(OAuthTokenSchema.safeParse(changed)))
    })
  })
})
