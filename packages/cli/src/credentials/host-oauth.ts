// Host OAuth over one providers.json: the logins (oauth/host-oauth-broker.ts) and the
// refreshing credential source they feed, built together so a login's token gets
// its refresh planned, and closed together.
import { resolvePaths, type CredproxyPaths } from '../paths.js'
import { HostOAuthBroker, type HostOAuthBrokerOptions } from '../oauth/host-oauth-broker.js'
import { ClientConfigurationCache } from '../oauth/oauth-client.js'
import type { SchedulerTimers } from '../oauth/proactive-scheduler.js'
import { loadProvidersConfig, type ProvidersConfig } from '../oauth/provider-config.js'
import type { RefreshCoordinatorOptions } from '../oauth/refresh-coordinator.js'
import type { LoginRateLimits } from '../oauth/session-manager.js'
import type { HostStores } from '../storage/types.js'
import { RefreshingCredentialSource, type RefreshingCredentialSourceOptions } from './refreshing-credential-source.js'

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

/** The two halves of host OAuth over one providers.json: logins, and the credentials they keep fresh. */
export interface HostOAuth {
  logins: HostOAuthBroker
  credentials: RefreshingCredentialSource
  /** Logins first, then the source (scheduler stop, last write of unsaved tokens). Idempotent. */
  close(): Promise<void>
}

/** null when no providers.json exists: the server then answers PROVIDER_NOT_CONFIGURED for logins. */
export async function createOAuthBroker(options: CreateOAuthBrokerOptions): Promise<HostOAuth | null> {
  const config = options.providers ?? (await loadProvidersConfig(options.paths ?? resolvePaths(options.env ?? process.env)))
  if (config === null) return null
  const { stores, log, now, env, timers, refresh, loginRateLimits } = options
  const clients = new ClientConfigurationCache()
  const sourceOptions: RefreshingCredentialSourceOptions = {}
  if (log !== undefined) sourceOptions.log = log
  if (now !== undefined) sourceOptions.now = now
  if (timers !== undefined) sourceOptions.timers = timers
  if (refresh !== undefined) sourceOptions.refresh = refresh
  const credentials = new RefreshingCredentialSource(stores, config, clients, sourceOptions)
  const loginOptions: HostOAuthBrokerOptions = { clients, onTokenStored: (p, b, token) => credentials.plan(p, b, token) }
  if (log !== undefined) loginOptions.log = log
  if (now !== undefined) loginOptions.now = now
  if (env !== undefined) loginOptions.env = env
  if (loginRateLimits !== undefined) loginOptions.loginRateLimits = loginRateLimits
  const logins = new HostOAuthBroker(stores, config, loginOptions)
  if (options.schedule !== false) {
    await credentials.startScheduler().catch((error: unknown) => {
      log?.(`oauth: could not start the refresh scheduler: ${(error as Error).message}`)
    })
  }
  let closed: Promise<void> | undefined
  return {
    logins,
    credentials,
    close: () => (closed ??= logins.close().then(() => credentials.close())),
  }
}
