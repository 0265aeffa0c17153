// The host OAuth broker the socket server calls (contract: broker.ts): logins via
// the session manager, refresh via the coordinator, and the proactive scheduler
// watching the stored tokens of every configured provider while it runs.
import { ProxyError, secondsUntilExpiry, type OAuthToken } from '@credproxy/core'
import type { Configuration } from 'openid-client'
import { resolvePaths, type CredproxyPaths } from '../paths.js'
import type { HostStores } from '../storage/types.js'
import { accountMismatch } from './account-check.js'
import type { OAuthBroker, OAuthInitiateResult, OAuthPollResult } from './broker.js'
import { sameAccount } from './account.js'
import { exposedError } from './errors.js'
import type { LoginFlow } from './login-flow.js'
import { ClientConfigurationCache } from './oauth-client.js'
import { ProactiveScheduler, type SchedulerTimers } from './proactive-scheduler.js'
import { loadProvidersConfig, type ProviderConfig, type ProvidersConfig } from './provider-config.js'
import { isUsable, RefreshCoordinator, type RefreshCoordinatorOptions } from './refresh-coordinator.js'
import { refreshTokenGrant } from './refresh-grant.js'
import { OAuthSessionManager, type LoginRateLimits, type StartOptions } from './session-manager.js'
import { escapeUntrusted } from '../escape.js'

export interface CreateOAuthBrokerOptions {
  stores: HostStores
  paths?: CredproxyPaths
  env?: NodeJS.ProcessEnv
  /** Host log; never receives a secret. */
  log?: (line: string) => void
  /** Already-loaded providers (tests, embedders); otherwise read from <configDir>/providers.json. */
  providers?: ProvidersConfig
  /** Start the proactive scheduler (default true). */
  schedule?: boolean
  now?: () => number
  timers?: SchedulerTimers
  /** Tuning for the refresh coordinator (tests, benchmarks). */
  refresh?: Partial<Omit<RefreshCoordinatorOptions, 'tokens' | 'grant'>>
  /** Overrides of the login rate limits (tests of other rules). */
  loginRateLimits?: Partial<LoginRateLimits>
}

export class HostOAuthBroker implements OAuthBroker {
  readonly sessions: OAuthSessionManager
  readonly coordinator: RefreshCoordinator
  readonly scheduler: ProactiveScheduler
  private readonly clients = new ClientConfigurationCache()
  private readonly log: (line: string) => void
  private readonly now: () => number
  private readonly env: NodeJS.ProcessEnv

  constructor(
    private readonly stores: HostStores,
    readonly config: ProvidersConfig,
    options: Omit<CreateOAuthBrokerOptions, 'stores' | 'providers'> = {},
  ) {
    this.log = options.log ?? (() => undefined)
    this.now = options.now ?? Date.now
    this.env = options.env ?? process.env
    this.sessions = new OAuthSessionManager({
      startFlow: (provider, bucket, start) => this.startFlow(provider, bucket, start),
      storeToken: async (provider, bucket, token, { mayReplace }) => {
        if (mayReplace === undefined) {
          await stores.tokens.saveToken(provider, token, bucket)
        } else {
          // Decided under the credential's write lock, against what is stored at that moment.
          await stores.tokens.updateToken(provider, bucket, (current) => {
            if (current !== null && !sameAccount(current, token) && !mayReplace()) throw wouldReplace(provider, bucket)
            return token
          })
        }
        this.scheduler.plan(provider, bucket, token, secondsUntilExpiry(token, this.now()))
        return token
      },
      now: this.now,
      log: this.log,
      ...(options.loginRateLimits === undefined ? {} : { rateLimits: options.loginRateLimits }),
    })
    this.coordinator = new RefreshCoordinator({
      ...options.refresh,
      tokens: stores.tokens,
      // Raw errors on purpose: the coordinator classifies an unreachable server as transient and retries.
      grant: async (provider, refreshToken) =>
        refreshTokenGrant(await this.clients.get(this.provider(provider)), refreshToken, this.now()),
      now: this.now,
      log: this.log,
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
      log: this.log,
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

  async initiate(provider: string, bucket: string, owner: string, start: StartOptions = {}): Promise<OAuthInitiateResult> {
    this.provider(provider)
    return await this.sessions.initiate(provider, bucket, owner, start)
  }

  poll(sessionId: string, owner: string): Promise<OAuthPollResult> {
    return Promise.resolve().then(() => this.sessions.poll(sessionId, owner))
  }

  exchange(sessionId: string, code: string, owner: string): Promise<OAuthToken> {
    return this.sessions.exchange(sessionId, code, owner)
  }

  cancel(sessionId: string, owner: string): Promise<void> {
    return Promise.resolve().then(() => this.sessions.cancel(sessionId, owner))
  }

  async getFreshToken(provider: string, bucket: string): Promise<OAuthToken | null> {
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

  async refresh(provider: string, bucket: string): Promise<OAuthToken> {
    this.provider(provider)
    const fresh = await this.coordinator.refresh(provider, bucket, { force: true })
    this.planAfterRefresh(provider, bucket, fresh)
    return fresh
  }

  /** Plan the next refresh; an unsaved token gets its write retried soon, with the scheduler's backoff. */
  private planAfterRefresh(provider: string, bucket: string, token: OAuthToken): void {
    this.scheduler.plan(provider, bucket, token)
    if (this.coordinator.unsavedToken(provider, bucket) !== undefined) this.scheduler.retrySoon(provider, bucket, notSavedYet(provider, bucket))
  }

  /** Stops timers and logins, then tries one last (bounded) write of any token kept only in memory. */
  async close(): Promise<void> {
    this.scheduler.stop()
    this.sessions.close()
    await this.coordinator.flushUnsaved()
  }

  provider(name: string): ProviderConfig {
    const config = this.config.providers.get(name)
    if (config === undefined) {
      throw exposedError('PROVIDER_NOT_CONFIGURED', `no OAuth provider '${name}' is configured on the host; add it to providers.json in the host's credproxy config directory`)
    }
    return config
  }

  private async client(provider: ProviderConfig): Promise<Configuration> {
    try {
      return await this.clients.get(provider)
    } catch (error) {
      this.log(`oauth ${provider.name}: cannot reach the authorization server: ${escapeUntrusted((error as Error).message)}`)
      throw new ProxyError('FLOW_INITIATION_FAILED', undefined, { cause: error })
    }
  }

  private async startFlow(name: string, bucket: string, start: StartOptions): Promise<LoginFlow> {
    const provider = this.provider(name)
    const flow = start.flow ?? provider.flows[0] ?? 'device_code'
    if (!provider.flows.includes(flow)) {
      throw exposedError('FLOW_INITIATION_FAILED', `the ${flow} flow is not allowed for ${name} on this host`)
    }
    const configuration = await this.client(provider)
    const context = { now: this.now, log: this.log }
    // The flows (and node:http for the loopback redirect) load when a login starts, not with every broker.
    if (flow === 'device_code') return (await import('./device-flow.js')).startDeviceFlow(configuration, provider, context)
    const [{ startPkceFlow }, { openBrowser }] = await Promise.all([import('./pkce-flow.js'), import('./open-browser.js')])
    return startPkceFlow(configuration, provider, {
      ...context,
      // Login CSRF: a redirect login may not swap the stored account for another one.
      checkAccount: async (token) => accountMismatch(name, bucket, await this.stores.tokens.getToken(name, bucket), token),
      ...(start.openBrowser === true ? { openBrowser: (url: string) => openBrowser(url, this.env) } : {}),
    })
  }
}

/** A login from the sandbox must not swap the host's stored account for another one. */
function wouldReplace(provider: string, bucket: string): ProxyError {
  return exposedError(
    'NOT_GRANTED',
    `the login finished, but ${provider}/${bucket} already holds a token of another account (or one whose account is unknown) on the host, ` +
      'and this session may not replace it: log in again with the same account, start the session with --allow-save, ' +
      `or run \`credproxy auth login ${provider}${bucket === 'default' ? '' : ` --bucket ${bucket}`}\` on the host`,
  )
}

function notSavedYet(provider: string, bucket: string): ProxyError {
  return new ProxyError('REFRESH_FAILED', `the refreshed token of ${provider}/${bucket} is not saved yet`)
}

/** null when no providers.json exists: the server then answers PROVIDER_NOT_CONFIGURED for logins. */
export async function createOAuthBroker(options: CreateOAuthBrokerOptions): Promise<HostOAuthBroker | null> {
  const config = options.providers ?? (await loadProvidersConfig(options.paths ?? resolvePaths(options.env ?? process.env)))
  if (config === null) return null
  const { stores, providers: _providers, schedule, ...rest } = options
  const broker = new HostOAuthBroker(stores, config, rest)
  if (schedule !== false) {
    await broker.startScheduler().catch((error: unknown) => {
      options.log?.(`oauth: could not start the refresh scheduler: ${(error as Error).message}`)
    })
  }
  return broker
}
