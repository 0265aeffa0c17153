// Stored tokens kept fresh: refreshed on demand through the RefreshCoordinator (one
// refresh per credential across processes) and ahead of expiry by the scheduler.
import { ProxyError, secondsUntilExpiry, type OAuthToken } from '@credproxy/core'
import type { ClientConfigurationCache } from '../oauth/oauth-client.js'
import { ProactiveScheduler, type SchedulerTimers } from '../oauth/proactive-scheduler.js'
import { configuredProvider, type ProviderConfig, type ProvidersConfig } from '../oauth/provider-config.js'
import { isUsable, RefreshCoordinator, type RefreshCoordinatorOptions } from '../oauth/refresh-coordinator.js'
import { refreshTokenGrant } from '../oauth/refresh-grant.js'
import type { HostStores } from '../storage/types.js'
import { StoredCredentialSource } from './stored-credential-source.js'

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

/** Thrown to the scheduler (which retries with backoff) while a refreshed token is held only in memory. */
export function notSavedYet(provider: string, bucket: string): ProxyError {
  return new ProxyError('REFRESH_FAILED', `the refreshed token of ${provider}/${bucket} is not saved yet`)
}
