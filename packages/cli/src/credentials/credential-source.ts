// The one door to credentials for every front door of a host session (the socket
// broker today, the egress proxy next): read, refresh, count usage. Implementations:
// stored-credential-source.ts (no providers.json: the host cannot refresh) and
// refreshing-credential-source.ts (RefreshCoordinator plus the proactive scheduler).
// Logins are not here: oauth/host-oauth-broker.ts; host-oauth.ts builds both.
import type { OAuthToken } from '@credproxy/core'

/** Usage of one provider/bucket, as get_bucket_stats reports it. */
export interface CredentialUsage {
  bucket: string
  requestCount: number
  percentage: number
  lastUsed?: number
}

/**
 * Everything a front door may do with the host's credentials. Tokens returned are the
 * full host tokens: the caller sanitizes (sanitizeTokenForProxy) before anything crosses.
 *
 * The egress proxy's `EgressCredentials { apiKey(name), accessToken(provider, bucket, { forceRefresh }) }`
 * is this source seen through a two-line adapter:
 *   apiKey: (name) => source.apiKey(name)
 *   accessToken: (p, b, { forceRefresh }) => (forceRefresh ? source.refreshNow(p, b) : source.freshToken(p, b))
 * (accessToken() below is exactly that, so the source itself satisfies the shape.)
 */
export interface CredentialSource {
  /** true when the host can refresh (providers.json is configured). */
  readonly refreshes: boolean
  /** The stored token, refreshed first when near expiry and a refresh is possible; null when none is stored. */
  freshToken(provider: string, bucket: string): Promise<OAuthToken | null>
  /** Refresh now (the caller saw a 401). A still-valid token is the answer when no refresh is possible or during cooldown. */
  refreshNow(provider: string, bucket: string): Promise<OAuthToken>
  /** The egress proxy's door: forceRefresh means refreshNow, otherwise freshToken. */
  accessToken(provider: string, bucket: string, options?: { forceRefresh?: boolean }): Promise<OAuthToken | null>
  apiKey(name: string): Promise<string | null>
  hasApiKey(name: string): Promise<boolean>
  listApiKeys(): Promise<string[]>
  listProviders(): Promise<string[]>
  listBuckets(provider: string): Promise<string[]>
  bucketStats(provider: string, bucket: string): Promise<CredentialUsage | null>
  /** Count one use of provider/bucket (bookkeeping: callers need not wait for it). */
  recordUsage(provider: string, bucket: string): Promise<void>
  /** Store a token from the sandbox: host-only fields are dropped and the stored refresh token survives. */
  saveToken(provider: string, bucket: string, token: OAuthToken): Promise<void>
  removeToken(provider: string, bucket: string): Promise<void>
  /** Stop timers; write anything held only in memory. Idempotent. */
  close(): Promise<void>
}

