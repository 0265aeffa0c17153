// TokenStore over the broker socket. Callers keep their TokenStore code; the host
// refreshes near-expiry tokens and never sends a refresh_token back.
import type { ProxyRequester } from '../client/requester.js'
import { ProxyError } from '../protocol/errors.js'
import type { BucketStats, LockOptions, TokenStore } from './stores.js'
import { sanitizeTokenForProxy, type OAuthToken } from './token.js'

export class ProxyTokenStore implements TokenStore {
  readonly #client: ProxyRequester

  constructor(client: ProxyRequester) {
    this.#client = client
  }

  async getToken(provider: string, bucket?: string): Promise<OAuthToken | null> {
    return nullWhenNotFound(this.#client.request('get_token', withBucket({ provider }, bucket)))
  }

  /** Host-only fields are dropped before sending: the host keeps its own refresh token. */
  async saveToken(provider: string, token: OAuthToken, bucket?: string): Promise<void> {
    await this.#client.request('save_token', withBucket({ provider, token: sanitizeTokenForProxy(token) }, bucket))
  }

  /** Removing what is not there is not an error, as with the host stores. */
  async removeToken(provider: string, bucket?: string): Promise<void> {
    await nullWhenNotFound(this.#client.request('remove_token', withBucket({ provider }, bucket)))
  }

  async listProviders(): Promise<string[]> {
    return (await this.#client.request('list_providers', {})).providers
  }

  async listBuckets(provider: string): Promise<string[]> {
    return (await this.#client.request('list_buckets', { provider })).buckets
  }

  async getBucketStats(provider: string, bucket?: string): Promise<BucketStats | null> {
    const data = await nullWhenNotFound(this.#client.request('get_bucket_stats', withBucket({ provider }, bucket)))
    if (data === null) return null
    const stats: BucketStats = { bucket: data.bucket, requestCount: data.requestCount, percentage: data.percentage }
    if (data.lastUsed !== undefined) stats.lastUsed = data.lastUsed
    return stats
  }

  /** Ask the host to refresh now (the caller saw a 401). Returns the sanitized token. */
  async refreshToken(provider: string, bucket?: string): Promise<OAuthToken> {
    return this.#client.request('refresh_token', withBucket({ provider }, bucket))
  }

  // The host serializes refreshes and logins, so sandbox-side locks are no-ops.
  async acquireRefreshLock(_provider: string, _options?: LockOptions): Promise<boolean> {
    return true
  }

  async releaseRefreshLock(_provider: string, _bucket?: string): Promise<void> {}

  async acquireAuthLock(_provider: string, _options?: LockOptions): Promise<boolean> {
    return true
  }

  async releaseAuthLock(_provider: string, _bucket?: string): Promise<void> {}
}

export function withBucket<T extends object>(payload: T, bucket: string | undefined): T & { bucket?: string } {
  return bucket === undefined ? payload : { ...payload, bucket }
}

export async function nullWhenNotFound<T>(answer: Promise<T>): Promise<T | null> {
  try {
    return await answer
  } catch (error) {
    if (error instanceof ProxyError && error.code === 'NOT_FOUND') return null
    throw error
  }
}
