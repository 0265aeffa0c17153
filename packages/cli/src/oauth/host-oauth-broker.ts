// The host OAuth logins the socket server calls (contract: broker.ts): device and
// PKCE flows via the session manager. Refreshing is the credential source's
// (credentials/refreshing-credential-source.ts); credentials/host-oauth.ts builds
// both over one provider configuration and hands a login's token to the source.
import { ProxyError, type OAuthToken } from '@credproxy/core'
import type { Configuration } from 'openid-client'
import type { HostStores } from '../storage/types.js'
import { accountMismatch } from './account-check.js'
import type { OAuthBroker, OAuthInitiateResult, OAuthPollResult } from './broker.js'
import { startDeviceFlow } from './device-flow.js'
import { sameAccount } from './account.js'
import { exposedError } from './errors.js'
import type { LoginFlow } from './login-flow.js'
import { ClientConfigurationCache } from './oauth-client.js'
import { openBrowser } from './open-browser.js'
import { startPkceFlow } from './pkce-flow.js'
import { configuredProvider, type ProviderConfig, type ProvidersConfig } from './provider-config.js'
import { OAuthSessionManager, type LoginRateLimits, type StartOptions } from './session-manager.js'
import { escapeUntrusted } from '../escape.js'

export interface HostOAuthBrokerOptions {
  env?: NodeJS.ProcessEnv
  log?: (line: string) => void
  now?: () => number
  loginRateLimits?: Partial<LoginRateLimits>
  /** Shared with the credential source: one discovery per provider. */
  clients?: ClientConfigurationCache
  /** A login stored this token (the credential source plans its refresh). */
  onTokenStored?: (provider: string, bucket: string, token: OAuthToken) => void
}

/** Login operations only: initiate, poll, exchange, cancel. */
export class HostOAuthBroker implements OAuthBroker {
  readonly sessions: OAuthSessionManager
  private readonly clients: ClientConfigurationCache
  private readonly log: (line: string) => void
  private readonly now: () => number
  private readonly env: NodeJS.ProcessEnv

  constructor(
    private readonly stores: HostStores,
    readonly config: ProvidersConfig,
    options: HostOAuthBrokerOptions = {},
  ) {
    this.log = options.log ?? (() => undefined)
    this.now = options.now ?? Date.now
    this.env = options.env ?? process.env
    this.clients = options.clients ?? new ClientConfigurationCache()
    const onTokenStored = options.onTokenStored ?? (() => undefined)
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
        onTokenStored(provider, bucket, token)
        return token
      },
      now: this.now,
      log: this.log,
      ...(options.loginRateLimits === undefined ? {} : { rateLimits: options.loginRateLimits }),
    })
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

  /** Stops logins in progress. */
  async close(): Promise<void> {
    this.sessions.close()
  }

  provider(name: string): ProviderConfig {
    return configuredProvider(this.config, name)
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
    if (flow === 'device_code') return startDeviceFlow(configuration, provider, context)
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
