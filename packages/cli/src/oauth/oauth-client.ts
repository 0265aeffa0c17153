// openid-client Configuration per provider (discovery or explicit endpoints), and
// the conversion of a token endpoint response into our stored token shape.
import type * as client from 'openid-client'
import type { OAuthToken } from '@credproxy/core'
import { openidClient } from './openid.js'
import type { ProviderConfig } from './provider-config.js'

/** Per-request timeout towards the authorization server (seconds, openid-client unit). */
export const OAUTH_HTTP_TIMEOUT_SECONDS = 15
/** Lifetime assumed when a token response has no expires_in. */
export const DEFAULT_TOKEN_LIFETIME_SECONDS = 3_600

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]', '::1'])

/** Plain http is allowed only towards this machine (test servers, local gateways), never in general. */
export function isLoopbackUrl(url: string): boolean {
  const parsed = URL.parse(url)
  return parsed !== null && LOOPBACK_HOSTS.has(parsed.hostname)
}

function needsInsecure(config: ProviderConfig): boolean {
  const urls = [config.issuer, config.authorization_endpoint, config.token_endpoint, config.device_authorization_endpoint]
  const http = urls.filter((u): u is string => u !== undefined && u.startsWith('http:'))
  if (http.some((u) => !isLoopbackUrl(u))) {
    throw new Error(`provider ${config.name}: plain http is only allowed for loopback addresses`)
  }
  return http.length > 0
}

/**
 * After discovery: the http allowance was granted for a loopback issuer, and openid-client
 * applies it to every endpoint. So each http endpoint the document names must be loopback too.
 */
export function checkDiscoveredEndpoints(name: string, metadata: client.ServerMetadata): void {
  for (const [field, value] of Object.entries(metadata)) {
    if (field !== 'issuer' && field !== 'jwks_uri' && !field.endsWith('_endpoint')) continue
    if (typeof value === 'string' && value.startsWith('http:') && !isLoopbackUrl(value)) {
      throw new Error(`provider ${name}: the discovery document's ${field} is plain http to a remote host; plain http is only allowed for loopback addresses`)
    }
  }
}

function clientAuth(client: typeof import('openid-client'), config: ProviderConfig): client.ClientAuth {
  return config.client_secret === undefined ? client.None() : client.ClientSecretPost(config.client_secret)
}

export async function createClientConfiguration(config: ProviderConfig): Promise<client.Configuration> {
  const insecure = needsInsecure(config)
  const client = await openidClient()
  let configuration: client.Configuration
  if (config.issuer !== undefined) {
    configuration = await client.discovery(
      new URL(config.issuer),
      config.client_id,
      undefined,
      clientAuth(client, config),
      insecure ? { execute: [client.allowInsecureRequests], timeout: OAUTH_HTTP_TIMEOUT_SECONDS } : { timeout: OAUTH_HTTP_TIMEOUT_SECONDS },
    )
    if (insecure) checkDiscoveredEndpoints(config.name, configuration.serverMetadata())
  } else {
    const tokenEndpoint = config.token_endpoint ?? ''
    const metadata: client.ServerMetadata = {
      issuer: new URL(tokenEndpoint).origin,
      token_endpoint: tokenEndpoint,
      ...(config.authorization_endpoint === undefined ? {} : { authorization_endpoint: config.authorization_endpoint }),
      ...(config.device_authorization_endpoint === undefined
        ? {}
        : { device_authorization_endpoint: config.device_authorization_endpoint }),
    }
    configuration = new client.Configuration(metadata, config.client_id, undefined, clientAuth(client, config))
    if (insecure) client.allowInsecureRequests(configuration)
  }
  configuration.timeout = OAUTH_HTTP_TIMEOUT_SECONDS
  return configuration
}

/** Discovery once per provider; a failed discovery is not cached (the next call retries). */
export class ClientConfigurationCache {
  private readonly entries = new Map<string, Promise<client.Configuration>>()

  constructor(private readonly create: (config: ProviderConfig) => Promise<client.Configuration> = createClientConfiguration) {}

  get(config: ProviderConfig): Promise<client.Configuration> {
    const cached = this.entries.get(config.name)
    if (cached !== undefined) return cached
    const created = this.create(config)
    this.entries.set(config.name, created)
    created.catch(() => this.entries.delete(config.name))
    return created
  }
}

/** Token endpoint response -> stored token. Provider extras are kept; expires_in becomes expiry. */
export function tokenFromResponse(response: client.TokenEndpointResponse, nowMs: number): OAuthToken {
  const token: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(response)) {
    if (key === 'expires_in' || typeof value === 'function' || value === undefined) continue
    token[key] = value
  }
  const lifetime = typeof response.expires_in === 'number' ? response.expires_in : DEFAULT_TOKEN_LIFETIME_SECONDS
  token['expiry'] = Math.floor(nowMs / 1000) + lifetime
  // oauth4webapi lowercases token_type; HTTP schemes are case-insensitive but some APIs are not.
  token['token_type'] = typeof response.token_type === 'string' && response.token_type.toLowerCase() === 'bearer' ? 'Bearer' : response.token_type
  return token as OAuthToken
}
