// The one request handler a connection calls. The connection has already checked
// the envelope and the rate limit; admit() checks payload schema, op version and
// grants (before any credential is touched); execute() runs one handler per
// operation against the session's credential source (reads, refresh, usage) or the
// OAuth logins. Every token that leaves goes through sanitizeTokenForProxy.
import {
  DEFAULT_BUCKET,
  isOpName,
  OP_MIN_VERSION,
  OP_PAYLOAD_SCHEMAS,
  ProxyError,
  sanitizeTokenForProxy,
  type ErrorCode,
  type OAuthToken,
  type OpName,
  type OpPayload,
} from '@credproxy/core'
import type { OAuthBroker } from '../oauth/broker.js'
import type { CredentialSource } from '../credentials/credential-source.js'
import { OP_CAPABILITY, type SessionGrants } from './grants.js'
import type { ServerLimits } from './limits.js'

export type ParsedRequest = { [O in OpName]: { op: O; payload: OpPayload<O> } }[OpName]

export type ParseResult = { ok: true; request: ParsedRequest } | { ok: false; message: string }

/** Names of what a request touches, for the audit log (only from a validated payload). */
export interface RequestNames {
  provider?: string
  bucket?: string
  key?: string
}

export interface DispatchContext {
  /** The one door to stored (and, with OAuth configured, refreshed) credentials. */
  credentials: CredentialSource
  /** Login operations; undefined without providers.json (oauth_* answer PROVIDER_NOT_CONFIGURED). */
  logins: OAuthBroker | undefined
  grants: SessionGrants
  sessionId: string
  limits: ServerLimits
  /** Host log (never the peer). */
  log: (line: string) => void
}

export function parseRequest(op: string, payload: unknown, version: number): ParseResult {
  if (!isOpName(op)) return { ok: false, message: 'unknown operation' }
  if (OP_MIN_VERSION[op] > version) return { ok: false, message: `operation ${op} needs protocol v${OP_MIN_VERSION[op]}` }
  // Only a missing payload means {} (PROTOCOL.md); null or a non-object is INVALID_REQUEST.
  const result = OP_PAYLOAD_SCHEMAS[op].safeParse(payload === undefined ? {} : payload)
  if (!result.success) {
    const fields = [...new Set(result.error.issues.map((i) => i.path.map(String).join('.') || '(payload)'))].slice(0, 4)
    return { ok: false, message: `invalid payload for ${op}: check ${fields.join(', ')}` }
  }
  return { ok: true, request: { op, payload: result.data } as ParsedRequest }
}

export function requestNames(request: ParsedRequest): RequestNames {
  const p = request.payload as Record<string, unknown>
  const names: RequestNames = {}
  if (typeof p['provider'] === 'string') {
    names.provider = p['provider']
    if (request.op !== 'list_buckets') names.bucket = typeof p['bucket'] === 'string' ? p['bucket'] : DEFAULT_BUCKET
  }
  if (typeof p['name'] === 'string') names.key = p['name']
  return names
}

/** NOT_GRANTED decided from the grants alone; null when allowed. */
export function authorize(
  request: ParsedRequest,
  grants: SessionGrants,
  names: RequestNames = requestNames(request),
): ProxyError | null {
  const capability = OP_CAPABILITY[request.op]
  if (capability === null) return null
  const decision =
    names.key !== undefined
      ? grants.checkKey(names.key)
      : names.provider !== undefined
        ? grants.checkProvider(names.provider, names.bucket, capability)
        : grants.checkCapability(capability)
  return decision.ok ? null : new ProxyError('NOT_GRANTED', decision.message, { expose: true })
}

type Data = Record<string, unknown>

/**
 * How a v1/v2 client is told a name is not granted: as llxprt-code's own server
 * answers that version, since its wrappers turn NOT_FOUND into null and
 * {exists:false} into false, but throw on NOT_GRANTED. null: answer NOT_GRANTED.
 */
export function legacyRefusal(op: OpName, refusal: ProxyError): { ok: true; data: Data } | { ok: false; code: 'NOT_FOUND'; message: string } | null {
  if (op === 'has_api_key') return { ok: true, data: { exists: false } }
  if (op === 'get_token' || op === 'get_api_key' || op === 'get_bucket_stats') return { ok: false, code: 'NOT_FOUND', message: refusal.message }
  return null
}
type Handler<O extends OpName> = (ctx: DispatchContext, payload: OpPayload<O>) => Promise<Data>

function notFound(what: string): ProxyError {
  return new ProxyError('NOT_FOUND', `${what} does not exist on the host`, { expose: true })
}

function tokenData(token: OAuthToken): Data {
  return sanitizeTokenForProxy(token)
}

function requireOAuth(ctx: DispatchContext): OAuthBroker {
  if (ctx.logins === undefined) {
    throw new ProxyError('PROVIDER_NOT_CONFIGURED', 'OAuth logins are not configured on this broker', { expose: true })
  }
  return ctx.logins
}

const HANDLERS: { [O in Exclude<OpName, 'cancel'>]: Handler<O> } = {
  async get_token(ctx, { provider, bucket = DEFAULT_BUCKET }) {
    const token = await ctx.credentials.freshToken(provider, bucket)
    if (token === null) throw notFound(`a token for ${provider}/${bucket}`)
    // Usage counting is bookkeeping: the answer neither waits for it nor fails with it.
    void ctx.credentials.recordUsage(provider, bucket).catch((error: unknown) => {
      ctx.log(`recording usage of ${provider}/${bucket} failed: ${String(error)}`)
    })
    return tokenData(token)
  },

  async save_token(ctx, { provider, bucket = DEFAULT_BUCKET, token }) {
    // The sandbox never sets host-only fields; the stored refresh token survives the merge.
    await ctx.credentials.saveToken(provider, bucket, token)
    return {}
  },

  async remove_token(ctx, { provider, bucket = DEFAULT_BUCKET }) {
    await ctx.credentials.removeToken(provider, bucket)
    return {}
  },

  async list_providers(ctx) {
    return { providers: ctx.grants.filterProviders(await ctx.credentials.listProviders()) }
  },

  async list_buckets(ctx, { provider }) {
    return { buckets: ctx.grants.filterBuckets(provider, await ctx.credentials.listBuckets(provider)) }
  },

  async get_bucket_stats(ctx, { provider, bucket = DEFAULT_BUCKET }) {
    const stats = await ctx.credentials.bucketStats(provider, bucket)
    if (stats === null) throw notFound(`usage of ${provider}/${bucket}`)
    const data: Data = { bucket: stats.bucket, requestCount: stats.requestCount, percentage: stats.percentage }
    if (stats.lastUsed !== undefined) data['lastUsed'] = stats.lastUsed
    return data
  },

  async get_api_key(ctx, { name }) {
    const key = await ctx.credentials.apiKey(name)
    if (key === null) throw notFound(`key ${name}`)
    return { key }
  },

  async list_api_keys(ctx) {
    return { keys: ctx.grants.filterKeys(await ctx.credentials.listApiKeys()) }
  },

  async has_api_key(ctx, { name }) {
    return { exists: await ctx.credentials.hasApiKey(name) }
  },

  async refresh_token(ctx, { provider, bucket = DEFAULT_BUCKET }) {
    return tokenData(await ctx.credentials.refreshNow(provider, bucket))
  },

  async oauth_initiate(ctx, { provider, bucket = DEFAULT_BUCKET }) {
    // Without the save capability, a login may create a token or renew the same account's, never replace another's.
    const mayReplace = (): boolean => ctx.grants.checkCapability('save').ok
    const r = await requireOAuth(ctx).initiate(provider, bucket, ctx.sessionId, { mayReplace })
    // Copy the documented fields only, so nothing host-only a broker kept on the result leaks.
    const data: Data = { flow_type: r.flow_type, session_id: r.session_id, pollIntervalMs: r.pollIntervalMs }
    for (const field of ['auth_url', 'verification_uri', 'user_code', 'verification_uri_complete'] as const) {
      if (r[field] !== undefined) data[field] = r[field]
    }
    return data
  },

  async oauth_exchange(ctx, { session_id, code }) {
    return tokenData(await requireOAuth(ctx).exchange(session_id, code, ctx.sessionId))
  },

  async oauth_poll(ctx, { session_id }) {
    const r = await requireOAuth(ctx).poll(session_id, ctx.sessionId)
    if (r.status === 'complete') return { status: 'complete', token: tokenData(r.token) }
    return r.interval === undefined ? { status: 'pending' } : { status: 'pending', interval: r.interval }
  },

  async oauth_cancel(ctx, { session_id }) {
    await requireOAuth(ctx).cancel(session_id, ctx.sessionId)
    return {}
  },

  async session_info(ctx) {
    return { session: ctx.sessionId, grants: ctx.grants.snapshot(), limits: { ...ctx.limits } }
  },
}

/** Run an authorized request. cancel is the connection's business, not a handler's. */
function dispatch(ctx: DispatchContext, request: ParsedRequest): Promise<Data> {
  if (request.op === 'cancel' || !Object.hasOwn(HANDLERS, request.op)) {
    return Promise.reject(new Error(`no handler for ${request.op}`))
  }
  const handler = HANDLERS[request.op] as Handler<typeof request.op>
  return handler(ctx, request.payload as never)
}

/** What admit() decided about one request frame, before any credential is touched. */
export type Admission =
  /** Answer at once with this error (names for the audit line when the payload was valid). */
  | { kind: 'refuse'; names: RequestNames; code: ErrorCode; message: string }
  /** A cancel: the connection answers it from its in-flight table. */
  | { kind: 'cancel'; targetId: string }
  /** Run it (execute), unless the connection has no slot; `refusal` is the grant decision. */
  | { kind: 'run'; request: ParsedRequest; names: RequestNames; refusal: ProxyError | null }

/**
 * The broker's one request handler, shared by every connection of a session:
 * admit (schema, op version, grants) then execute (credentials or logins).
 */
export class RequestHandler {
  constructor(private readonly ctx: DispatchContext) {}

  get grants(): SessionGrants {
    return this.ctx.grants
  }

  admit(op: string, payload: unknown, version: number): Admission {
    const parsed = parseRequest(op, payload, version)
    if (!parsed.ok) return { kind: 'refuse', names: {}, code: 'INVALID_REQUEST', message: parsed.message }
    const request = parsed.request
    if (request.op === 'cancel') return { kind: 'cancel', targetId: request.payload.targetId }
    const names = requestNames(request)
    return { kind: 'run', request, names, refusal: authorize(request, this.ctx.grants, names) }
  }

  execute(request: ParsedRequest): Promise<Data> {
    return dispatch(this.ctx, request)
  }
}
