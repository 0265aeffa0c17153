// The one door to credentials for every front door of a host session (the socket
// broker today, the egress proxy next): read, refresh, count usage. Two kinds: stored
// only (no providers.json: the host cannot refresh) and OAuth-refreshing (the
// RefreshCoordinator plus the proactive scheduler). Logins are not here: they live
// in oauth/host-oauth-broker.ts and hand their tokens to plan().
import { mergeRefreshedToken, ProxyError, sanitizeTokenForProxy, secondsUntilExpiry, type OAuthToken } from '@credproxy/core'
import { ExposedProxyError } from '../broker/dispatch.js'
import { exposedError } from '../oauth/errors.js'
import type { ClientConfigurationCache } from '../oauth/oauth-client.js'
import { ProactiveScheduler, type SchedulerTimers } from '../oauth/proactive-scheduler.js'
import type { ProviderConfig, ProvidersConfig } from '../oauth/provider-config.js'
import { isUsable, RefreshCoordinator, type RefreshCoordinatorOptions } from '../oauth/refresh-coordinator.js'
import { refreshTokenGrant } from '../oauth/refresh-grant.js'
import type { HostStores } from '../storage/types.js'

type BucketStats = NonNullable<Awaited<ReturnType<HostStores['tokens']['getBucketStats']>>>

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
  bucketStats(provider: string, bucket: string): Promise<BucketStats | null>
  /** Count one use of provider/bucket (bookkeeping: callers need not wait for it). */
  recordUsage(provider: string, bucket: string): Promise<void>
  /** Store a token from the sandbox: host-only fields are dropped and the stored refresh token survives. */
  saveToken(provider: string, bucket: string, token: OAuthToken): Promise<void>
  removeToken(provider: string, bucket: string): Promise<void>
  /** Stop timers; write anything held only in memory. Idempotent. */
  close(): Promise<void>
}

function notFound(what: string): ExposedProxyError {
  return new ExposedProxyError('NOT_FOUND', `${what} does not exist on the host`)
}

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
    throw new ExposedProxyError('REFRESH_NOT_AVAILABLE', 'this broker cannot refresh tokens; log in again on the host')
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

  bucketStats(provider: string, bucket: string): Promise<BucketStats | null> {
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

export interface RefreshingCredentialSourceOptions {
  /** Host log; never receives a secret. */
  log?: (line: string) => void
  now?: () => number
  timers?: SchedulerTimers
  /** Tuning for the refresh coordinator (tests, benchmarks). */
  refresh?: Partial<Omit<RefreshCoordinatorOptions, 'tokens' | 'grant'>>
}

/** Stored tokens kept fresh: refresh on demand through the coordinator, and ahead of expiry by the scheduler. */
export class RefreshingCredentialSource extends StoredCredentialSource {
  override readonly refreshes: boolean = true
  readonly coordinator: RefreshCoordinator
  readonly scheduler: ProactiveScheduler
  private readonly now: () => number
  #closed: Promise<void> | undefined

  constructor(
    stores: HostStores,
    private readonly config: ProvidersConfig,
    clients: ClientConfigurationCache,
    options: RefreshingCredentialSourceOptions = {},
  ) {
    super(stores)
    const log = options.log ?? (() => undefined)
    this.now = options.now ?? Date.now
    this.coordinator = new RefreshCoordinator({
      ...options.refresh,
      tokens: stores.tokens,
      // Raw errors on purpose: the coordinator classifies an unreachable server as transient and retries.
      grant: async (provider, refreshToken) => refreshTokenGrant(await clients.get(this.provider(provider)), refreshToken, this.now()),
      now: this.now,
      log,
    })
    const schedulerOptions: ConstructorParameters<typeof ProactiveScheduler>[0] = {
      getToken: (provider, bucket) => stores.tokens.getToken(provider, bucket),
      refresh: async (provider, bucket, marginSeconds) => {
        // With an unsaved token this retries its write; that token is refreshed only when itself near expiry.
        const unsaved = this.coordinator.unsavedToken(provider, bucket) !== undefined
        const token = await this.coordinator.refresh(provider, bucket, unsaved ? {} : { marginSeconds })
        if (this.coordinator.unsavedToken(provider, bucket) !== undefined) throw notSavedYet(provider, bucket)
        return token
      },
      now: this.now,
      log,
    }
    if (options.timers !== undefined) schedulerOptions.timers = options.timers
    this.scheduler = new ProactiveScheduler(schedulerOptions)
  }

  /** Watch the stored tokens of every configured provider. */
  async startScheduler(): Promise<void> {
    for (const provider of this.config.providers.keys()) {
      for (const bucket of await this.stores.tokens.listBuckets(provider)) {
        await this.scheduler.watch(provider, bucket)
      }
    }
  }

  /** A login stored this token: plan its refresh. */
  plan(provider: string, bucket: string, token: OAuthToken): void {
    this.scheduler.plan(provider, bucket, token, secondsUntilExpiry(token, this.now()))
  }

  override async freshToken(provider: string, bucket: string): Promise<OAuthToken | null> {
    const stored = await this.stores.tokens.getToken(provider, bucket)
    if (stored === null) return null
    if (stored.refresh_token === undefined || !this.config.providers.has(provider)) return stored
    // A refreshed token whose save failed replaces the stored one; refresh() retries its write.
    const unsaved = this.coordinator.unsavedToken(provider, bucket)
    const token = unsaved ?? stored
    if (unsaved === undefined && !this.coordinator.needsRefresh(token, {})) return token
    try {
      const fresh = await this.coordinator.refresh(provider, bucket)
      this.planAfterRefresh(provider, bucket, fresh)
      return fresh
    } catch (error) {
      // A refresh that failed is no reason to withhold a token that still works.
      if (isUsable(token, this.now())) return token
      throw error
    }
  }

  override async refreshNow(provider: string, bucket: string): Promise<OAuthToken> {
    this.provider(provider)
    const fresh = await this.coordinator.refresh(provider, bucket, { force: true })
    this.planAfterRefresh(provider, bucket, fresh)
    return fresh
  }

  /** Stops the scheduler, then tries one last (bounded) write of any token kept only in memory. */
  override close(): Promise<void> {
    this.#closed ??= (async () => {
      this.scheduler.stop()
      await this.coordinator.flushUnsaved()
    })()
    return this.#closed
  }

  /** Plan the next refresh; an unsaved token gets its write retried soon, with the scheduler's backoff. */
  private planAfterRefresh(provider: string, bucket: string, token: OAuthToken): void {
    this.scheduler.plan(provider, bucket, token)
    if (this.coordinator.unsavedToken(provider, bucket) !== undefined) this.scheduler.retrySoon(provider, bucket, notSavedYet(provider, bucket))
  }

  private provider(name: string): ProviderConfig {
    return configuredProvider(this.config, name)
  }
}

/** The configuration of an OAuth provider, or PROVIDER_NOT_CONFIGURED naming the file to edit. */
export function configuredProvider(config: ProvidersConfig, name: string): ProviderConfig {
  const provider = config.providers.get(name)
  if (provider === undefined) {
    throw exposedError('PROVIDER_NOT_CONFIGURED', `no OAuth provider '${name}' is configured on the host; add it to providers.json in the host's credproxy config directory`)
  }
  return provider
}

/** Thrown to the scheduler (which retries with backoff) while a refreshed token is held only in memory. */
export function notSavedYet(provider: string, bucket: string): ProxyError {
  return new ProxyError('REFRESH_FAILED', `the refreshed token of ${provider}/${bucket} is not saved yet`)
}
