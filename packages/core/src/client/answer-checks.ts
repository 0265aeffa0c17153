// Hand-written checks of what the client sends and receives: the same rules as the zod
// schemas in protocol/messages.ts (test/answer-checks.test.ts holds them equal), without
// loading zod, which would double the start-up time of `credproxy key get` in a sandbox.
import { BUCKET_NAME_PATTERN, KEY_NAME_PATTERN, PROVIDER_NAME_PATTERN } from '../protocol/names.js'
import type { OpName, Response } from '../protocol/messages.js'

type Obj = Record<string, unknown>
/** Undefined when the value passes; else the failing field path ('' for the value itself). `present`: the key exists. */
type Check = (value: unknown, present?: boolean) => string | undefined

const HEX64 = /^[0-9a-f]{64}$/
const SESSION_ID = /^[A-Za-z0-9_-]{16,128}$/

function isObj(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

const str = (min = 0, max = Infinity, pattern?: RegExp): Check => (v) =>
  typeof v === 'string' && v.length >= min && v.length <= max && (pattern === undefined || pattern.test(v)) ? undefined : ''
const num: Check = (v) => (typeof v === 'number' && Number.isFinite(v) ? undefined : '')
const int = (min: number, max: number): Check => (v) => (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? undefined : '')
const bool: Check = (v) => (typeof v === 'boolean' ? undefined : '')
const anything: Check = () => undefined
/** zod's z.unknown() as an object field: any value, but the key must be there. */
const present: Check = (_v, isPresent) => (isPresent === false ? '' : undefined)
const optional = (check: Check): Check => (v) => (v === undefined ? undefined : check(v))
const literal = (value: unknown): Check => (v) => (v === value ? undefined : '')
const arrayOf = (check: Check): Check => (v) => {
  if (!Array.isArray(v)) return ''
  for (let i = 0; i < v.length; i++) {
    const bad = check(v[i])
    if (bad !== undefined) return join(String(i), bad)
  }
  return undefined
}
const recordOf = (check: Check): Check => (v) => {
  if (!isObj(v)) return ''
  for (const [key, value] of Object.entries(v)) {
    const bad = check(value)
    if (bad !== undefined) return join(key, bad)
  }
  return undefined
}
function join(key: string, inner: string): string {
  return inner === '' ? key : `${key}.${inner}`
}

/** strict: unknown keys fail (requests); loose: they are kept (answers). */
const object = (shape: Record<string, Check>, strict: boolean): Check => (v) => {
  if (!isObj(v)) return ''
  for (const [key, check] of Object.entries(shape)) {
    const bad = check(v[key], Object.hasOwn(v, key))
    if (bad !== undefined) return join(key, bad)
  }
  if (strict) for (const key of Object.keys(v)) if (!Object.hasOwn(shape, key)) return key
  return undefined
}
const either = (...checks: Check[]): Check => (v) => (checks.some((check) => check(v) === undefined) ? undefined : '')

const provider = str(0, Infinity, PROVIDER_NAME_PATTERN)
const providerBucket = { provider, bucket: optional(str(0, Infinity, BUCKET_NAME_PATTERN)) }
const keyName = { name: str(0, Infinity, KEY_NAME_PATTERN) }
const sessionId = str(0, Infinity, SESSION_ID)
const token = object(
  { access_token: str(1), refresh_token: optional(str(1)), expiry: num, token_type: str(1), scope: optional(either(str(), (v) => (v === null ? undefined : ''))) },
  false,
)
const empty = object({}, true)
const loose = object({}, false)

const PAYLOAD_CHECKS: Record<OpName, Check> = {
  get_token: object(providerBucket, true),
  save_token: object({ ...providerBucket, token }, true),
  remove_token: object(providerBucket, true),
  list_providers: empty,
  list_buckets: object({ provider }, true),
  get_bucket_stats: object(providerBucket, true),
  get_api_key: object(keyName, true),
  list_api_keys: empty,
  has_api_key: object(keyName, true),
  oauth_initiate: object(providerBucket, true),
  oauth_exchange: object({ session_id: sessionId, code: str(1, 4096) }, true),
  oauth_poll: object({ session_id: sessionId }, true),
  oauth_cancel: object({ session_id: sessionId }, true),
  refresh_token: object(providerBucket, true),
  cancel: object({ targetId: str(1, 128) }, true),
  session_info: empty,
}

const DATA_CHECKS: Record<OpName, Check> = {
  get_token: token,
  save_token: loose,
  remove_token: loose,
  list_providers: object({ providers: arrayOf(str()) }, false),
  list_buckets: object({ buckets: arrayOf(str()) }, false),
  get_bucket_stats: object({ bucket: str(), requestCount: num, percentage: num, lastUsed: optional(num) }, false),
  get_api_key: object({ key: str() }, false),
  list_api_keys: object({ keys: arrayOf(str()) }, false),
  has_api_key: object({ exists: bool }, false),
  oauth_initiate: object(
    {
      flow_type: either(literal('device_code'), literal('pkce_redirect'), literal('browser_redirect')),
      session_id: str(),
      pollIntervalMs: int(0, Number.MAX_SAFE_INTEGER),
      auth_url: optional(str()),
      verification_uri: optional(str()),
      user_code: optional(str()),
      verification_uri_complete: optional(str()),
    },
    false,
  ),
  oauth_exchange: token,
  oauth_poll: either(
    object({ status: literal('pending'), interval: optional(num) }, false),
    object({ status: literal('complete'), token }, false),
  ),
  oauth_cancel: loose,
  refresh_token: token,
  cancel: object({ cancelled: bool }, false),
  session_info: object({ session: str(), grants: present, limits: recordOf(num) }, false),
}

/** The failing field path of an outgoing payload ('(payload)' for the whole), or undefined when it is valid. */
export function payloadProblem(op: OpName, payload: unknown): string | undefined {
  const bad = PAYLOAD_CHECKS[op](payload)
  return bad === undefined ? undefined : bad || '(payload)'
}

export function isValidOpData(op: OpName, data: unknown): boolean {
  return DATA_CHECKS[op](data) === undefined
}

const RESPONSE = either(
  object({ id: optional(str()), ok: literal(true), data: anything }, false),
  object({ id: optional(str()), ok: literal(false), code: str(), error: optional(str()), retryAfter: optional(num) }, false),
)

/** A frame as a Response, or undefined when it is not one. */
export function asResponse(frame: unknown): Response | undefined {
  return RESPONSE(frame) === undefined ? (frame as Response) : undefined
}

const VERSION = int(0, 1_000_000)
const HANDSHAKE_DATA = object({ version: VERSION, serverNonce: optional(str(0, Infinity, HEX64)), serverProof: optional(str(0, Infinity, HEX64)) }, false)
const FINISH_DATA = object({ session: str() }, false)

export function asHandshakeData(data: unknown): { version: number; serverNonce?: string; serverProof?: string } | undefined {
  return HANDSHAKE_DATA(data) === undefined ? (data as { version: number; serverNonce?: string; serverProof?: string }) : undefined
}

export function asFinishData(data: unknown): { session: string } | undefined {
  return FINISH_DATA(data) === undefined ? (data as { session: string }) : undefined
}
