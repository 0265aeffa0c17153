// The host stores as they are: what a session without providers.json serves.
import { mergeRefreshedToken, sanitizeTokenForProxy, secondsUntilExpiry, type OAuthToken } from '@credproxy/core'
import { exposedError } from '../oauth/errors.js'
import type { HostStores } from '../storage/types.js'
import type { CredentialSource, CredentialUsage } from './credential-source.js'

/** The host stores as they are: no providers.json, so nothing can be refreshed. */
export class StoredCredentialSource implements CredentialSource {
  readonly refreshes: boolean = false

  constructor(protected readonly stores: HostStores) {}

  freshToken(provider: string, bucket: string): Promise<OAuthToken | null> {
    return this.stores.tokens.getToken(provider, bucket)
  }

  async refreshNow(provider: string, bucket: string): Promise<OAuthToken> {
    // Without OAuth configuration the host cannot refresh; a still-valid token is the best answer.
    const stored = await this.stores.tokens.getToken(provider, bucket)
    if (stored === null) throw notFound(`a token for ${provider}/${bucket}`)
    if (secondsUntilExpiry(stored) > 0) return stored
    throw exposedError('REFRESH_NOT_AVAILABLE', 'this broker cannot refresh tokens; log in again on the host')
  }

  accessToken(provider: string, bucket: string, options: { forceRefresh?: boolean } = {}): Promise<OAuthToken | null> {
    return options.forceRefresh === true ? this.refreshNow(provider, bucket) : this.freshToken(provider, bucket)
  }

  apiKey(name: string): Promise<string | null> {
    return this.stores.keys.getKey(name)
  }

  hasApiKey(name: string): Promise<boolean> {
    return this.stores.keys.hasKey(name)
  }

  listApiKeys(): Promise<string[]> {
    return this.stores.keys.listKeys()
  }

  listProviders(): Promise<string[]> {
    return this.stores.tokens.listProviders()
  }

  listBuckets(provider: string): Promise<string[]> {
    return this.stores.tokens.listBuckets(provider)
  }

  bucketStats(provider: string, bucket: string): Promise<CredentialUsage | null> {
    return this.stores.tokens.getBucketStats(provider, bucket)
  }

  recordUsage(provider: string, bucket: string): Promise<void> {
    return this.stores.tokens.recordUsage(provider, bucket)
  }

  async saveToken(provider: string, bucket: string, token: OAuthToken): Promise<void> {
    const incoming = sanitizeTokenForProxy(token)
    await this.stores.tokens.updateToken(provider, bucket, (current) => mergeRefreshedToken(current, incoming))
  }

  async removeToken(provider: string, bucket: string): Promise<void> {
    await this.stores.tokens.removeToken(provider, bucket)
  }

  async close(): Promise<void> {}
}

function notFound(what: string): ReturnType<typeof exposedError> {
  return exposedError('NOT_FOUND', `${what} does not exist on the host`)
}
