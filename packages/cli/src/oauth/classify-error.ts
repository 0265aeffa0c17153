// What an authorization-server failure means for us, decided from the OAuth
// `error` field first and the HTTP status second (RFC 6749 5.2, RFC 8628 3.5).
import { loadedOpenidClient } from './openid.js'
import { escapeUntrusted } from '../escape.js'

export type OAuthFailureKind =
  /** Device flow: the user has not answered yet. */
  | 'pending'
  /** Device flow: poll less often (interval + 5 s). */
  | 'slow_down'
  /** The user or the server refused the login. */
  | 'denied'
  /** The device code or login expired. */
  | 'expired'
  /** The grant (refresh token, code) is invalid or revoked: only a new login helps. */
  | 'invalid_grant'
  /** 5xx, 429 or a network failure: retrying later may work. */
  | 'transient'
  /** Anything else (bad client config, protocol violation): retrying will not help. */
  | 'fatal'

export interface OAuthFailure {
  kind: OAuthFailureKind
  /** The OAuth `error` value, when there was one (safe to log: a registry word, not a secret). */
  error?: string
  status?: number
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
])

function fromErrorField(error: string, status: number | undefined): OAuthFailure {
  switch (error) {
    case 'authorization_pending':
      return { kind: 'pending', error }
    case 'slow_down':
      return { kind: 'slow_down', error }
    case 'access_denied':
      return { kind: 'denied', error }
    case 'expired_token':
      return { kind: 'expired', error }
    case 'invalid_grant':
    case 'invalid_token':
      return { kind: 'invalid_grant', error }
    case 'temporarily_unavailable':
    case 'server_error':
      return { kind: 'transient', error }
    default:
      return fromStatus(status, error)
  }
}

function fromStatus(status: number | undefined, error?: string): OAuthFailure {
  const base = error === undefined ? {} : { error }
  if (status === undefined) return { kind: 'fatal', ...base }
  if (status >= 500 || status === 429 || status === 408) return { kind: 'transient', status, ...base }
  return { kind: 'fatal', status, ...base }
}

function networkCode(error: unknown): string | undefined {
  for (let current = error, depth = 0; current instanceof Error && depth < 5; current = current.cause, depth += 1) {
    const code = (current as { code?: unknown }).code
    if (typeof code === 'string' && NETWORK_CODES.has(code)) return code
    if (current.name === 'TimeoutError' || current.name === 'AbortError') return current.name
    if (current instanceof TypeError && current.message === 'fetch failed') return 'fetch failed'
  }
  return undefined
}

export function classifyOAuthError(error: unknown): OAuthFailure {
  const lib = loadedOpenidClient()
  if (lib !== undefined && error instanceof lib.ResponseBodyError) return fromErrorField(error.error, error.status)
  // An OAuth error redirect (authorization endpoint) or a parsed body without the class.
  const field = (error as { error?: unknown } | null)?.error
  const status = (error as { status?: unknown } | null)?.status
  if (typeof field === 'string') return fromErrorField(field, typeof status === 'number' ? status : undefined)
  if (networkCode(error) !== undefined) return { kind: 'transient' }
  // openid-client: a non-OAuth error response carries the Response as cause.
  const cause = (error as { cause?: unknown } | null)?.cause
  if (cause instanceof Response) return fromStatus(cause.status)
  if (typeof status === 'number') return fromStatus(status)
  return { kind: 'fatal' }
}

/** A log-safe one-liner: kind, OAuth error word, status. Never a token or a raw body. */
export function describeFailure(failure: OAuthFailure): string {
  const parts: string[] = [failure.kind]
  if (failure.error !== undefined) parts.push(`error=${escapeUntrusted(failure.error, 64)}`)
  if (failure.status !== undefined) parts.push(`status=${failure.status}`)
  return parts.join(' ')
}
