// Typed messages: zod schemas for the handshake, the request envelope, and every
// operation's payload (strict: unknown keys are a mistake) and data.
// Normative spec: dev-docs/protocol.md "Operations".
import * as z from 'zod'
import { OAuthTokenSchema } from './token-schema.js'
import { BucketName, KeyName, ProviderName } from './name-schemas.js'

export { MIN_PROTOCOL_VERSION, MAX_PROTOCOL_VERSION, MAX_LEGACY_PROTOCOL_VERSION, OP_MIN_VERSION } from './versions.js'

const Hex64 = z.string().regex(/^[0-9a-f]{64}$/)
const Version = z.number().int().min(0).max(1_000_000)

// ---- Handshake -------------------------------------------------------------

/** The handshake envelope is read leniently (legacy clients may add fields); its payload strictly. */
export const HandshakeRequestSchema = z.object({
  v: Version.optional(),
  op: z.literal('handshake'),
  payload: z.strictObject({
    minVersion: Version,
    maxVersion: Version,
    /** v1/v2 bearer token (legacy mode only). */
    capabilityToken: z.string().max(1024).optional(),
    /** v3: the client's challenge. */
    clientNonce: Hex64.optional(),
  }),
})
export type HandshakeRequest = z.infer<typeof HandshakeRequestSchema>

export const HandshakeFinishRequestSchema = z.object({
  v: Version.optional(),
  op: z.literal('handshake_finish'),
  payload: z.strictObject({ clientProof: Hex64 }),
})

export const HandshakeResponseDataSchema = z.looseObject({
  version: Version,
  serverNonce: Hex64.optional(),
  serverProof: Hex64.optional(),
})

export const HandshakeFinishDataSchema = z.looseObject({ session: z.string() })

// ---- Requests ---------------------------------------------------------------

export const RequestIdSchema = z.string().min(1).max(128)

/** Envelope only; the payload is checked against OP_PAYLOAD_SCHEMAS[op]. */
export const RequestEnvelopeSchema = z.object({
  v: Version.optional(),
  id: RequestIdSchema,
  op: z.string().min(1).max(64),
  payload: z.unknown().optional(),
})
export type RequestEnvelope = z.infer<typeof RequestEnvelopeSchema>

const ProviderBucket = { provider: ProviderName, bucket: BucketName.optional() }
const Empty = z.strictObject({})
const SessionId = z.string().regex(/^[A-Za-z0-9_-]{16,128}$/)

export const OP_PAYLOAD_SCHEMAS = {
  get_token: z.strictObject(ProviderBucket),
  save_token: z.strictObject({ ...ProviderBucket, token: OAuthTokenSchema }),
  remove_token: z.strictObject(ProviderBucket),
  list_providers: Empty,
  list_buckets: z.strictObject({ provider: ProviderName }),
  get_bucket_stats: z.strictObject(ProviderBucket),
  get_api_key: z.strictObject({ name: KeyName }),
  list_api_keys: Empty,
  has_api_key: z.strictObject({ name: KeyName }),
  oauth_initiate: z.strictObject(ProviderBucket),
  oauth_exchange: z.strictObject({ session_id: SessionId, code: z.string().min(1).max(4096) }),
  oauth_poll: z.strictObject({ session_id: SessionId }),
  oauth_cancel: z.strictObject({ session_id: SessionId }),
  refresh_token: z.strictObject(ProviderBucket),
  cancel: z.strictObject({ targetId: RequestIdSchema }),
  session_info: Empty,
} as const

export type OpName = keyof typeof OP_PAYLOAD_SCHEMAS
export type OpPayload<O extends OpName> = z.infer<(typeof OP_PAYLOAD_SCHEMAS)[O]>

export function isOpName(value: string): value is OpName {
  return Object.hasOwn(OP_PAYLOAD_SCHEMAS, value)
}

// ---- Response data ------------------------------------------------------------

export const OAuthInitiateDataSchema = z.looseObject({
  flow_type: z.enum(['device_code', 'pkce_redirect', 'browser_redirect']),
  session_id: z.string(),
  pollIntervalMs: z.number().int().nonnegative(),
  auth_url: z.string().optional(),
  verification_uri: z.string().optional(),
  user_code: z.string().optional(),
  verification_uri_complete: z.string().optional(),
})

export const OAuthPollDataSchema = z.union([
  z.looseObject({ status: z.literal('pending'), interval: z.number().optional() }),
  z.looseObject({ status: z.literal('complete'), token: OAuthTokenSchema }),
])

export const OP_DATA_SCHEMAS = {
  get_token: OAuthTokenSchema,
  save_token: z.looseObject({}),
  remove_token: z.looseObject({}),
  list_providers: z.looseObject({ providers: z.array(z.string()) }),
  list_buckets: z.looseObject({ buckets: z.array(z.string()) }),
  get_bucket_stats: z.looseObject({
    bucket: z.string(),
    requestCount: z.number(),
    percentage: z.number(),
    lastUsed: z.number().optional(),
  }),
  get_api_key: z.looseObject({ key: z.string() }),
  list_api_keys: z.looseObject({ keys: z.array(z.string()) }),
  has_api_key: z.looseObject({ exists: z.boolean() }),
  oauth_initiate: OAuthInitiateDataSchema,
  oauth_exchange: OAuthTokenSchema,
  oauth_poll: OAuthPollDataSchema,
  oauth_cancel: z.looseObject({}),
  refresh_token: OAuthTokenSchema,
  cancel: z.looseObject({ cancelled: z.boolean() }),
  session_info: z.looseObject({
    session: z.string(),
    grants: z.unknown(),
    limits: z.record(z.string(), z.number()),
  }),
} satisfies Record<OpName, z.ZodType>

export type OpData<O extends OpName> = z.infer<(typeof OP_DATA_SCHEMAS)[O]>

// ---- Responses ------------------------------------------------------------------

/** Responses carry no `v` or `op` (clients must not require them); handshake answers do. */
export const ResponseSchema = z.union([
  z.looseObject({ id: z.string().optional(), ok: z.literal(true), data: z.unknown().optional() }),
  z.looseObject({
    id: z.string().optional(),
    ok: z.literal(false),
    code: z.string(),
    error: z.string().optional(),
    retryAfter: z.number().optional(),
  }),
])
export type Response = z.infer<typeof ResponseSchema>
