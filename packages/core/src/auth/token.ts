// OAuth token shape, and the two rules that keep host-only secrets on the host.
// No zod at run time here: the sandbox-side client loads this file (token-schema.ts has the schema).
import type * as z from 'zod'
import type { OAuthTokenSchema } from '../protocol/token-schema.js'

export type OAuthToken = z.infer<typeof OAuthTokenSchema>

/** Fields that never leave the host: they would let the sandbox mint new credentials. */
export const HOST_ONLY_TOKEN_FIELDS = [
  'refresh_token',
  'client_secret',
  'code_verifier',
  'pkce_verifier',
  'device_code',
] as const

/** A copy of the token without any host-only field. Used on every token that crosses the socket. */
export function sanitizeTokenForProxy(token: OAuthToken): OAuthToken {
  const copy: Record<string, unknown> = { ...token }
  for (const field of HOST_ONLY_TOKEN_FIELDS) delete copy[field]
  return copy as OAuthToken
}

/**
 * Merge a token coming from the sandbox (or a refresh that did not rotate) over the
 * stored one: host-only fields are never taken from `incoming` when it came from
 * the sandbox, and a missing refresh_token keeps the stored one.
 */
export function mergeRefreshedToken(stored: OAuthToken | null, incoming: OAuthToken): OAuthToken {
  const merged: Record<string, unknown> = { ...(stored ?? {}), ...incoming }
  if (incoming.refresh_token === undefined && stored?.refresh_token !== undefined) {
    merged['refresh_token'] = stored.refresh_token
  }
  return merged as OAuthToken
}

/** Seconds until expiry (negative when expired). */
export function secondsUntilExpiry(token: OAuthToken, nowMs: number = Date.now()): number {
  return token.expiry - nowMs / 1000
}
