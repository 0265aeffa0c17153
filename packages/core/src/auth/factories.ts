// createTokenStore() / createProviderKeyStorage(): socket-backed inside a sandbox
// (CREDPROXY_SOCKET set), the caller's host store otherwise. Calling code keeps
// its TokenStore / ProviderKeyStorage and never learns which one it got.
import { isAbsolute } from 'node:path'
import { ProxySocketClient } from '../client/socket-client.js'
import { isProxyMode, SOCKET_ENV } from './proxy-mode.js'
import { ProxyError } from '../protocol/errors.js'
import { ProxyOAuthAdapter, type LoginUI } from './proxy-oauth-adapter.js'
import { ProxyProviderKeyStorage } from './proxy-provider-key-storage.js'
import { ProxyTokenStore } from './proxy-token-store.js'
import { readSessionSecret } from './session-secret.js'
import type { ProviderKeyStorage, TokenStore } from './stores.js'

/** Longest socket path in bytes: macOS sun_path holds 104 including the NUL (Linux 108); same as the server's. */
export const MAX_SOCKET_PATH_BYTES = 103

function socketPathProblem(path: string): string | undefined {
  if (!isAbsolute(path)) return 'must be an absolute path'
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) return `must be at most ${MAX_SOCKET_PATH_BYTES} bytes`
  return undefined
}

// One connection per process per socket path: a process is one sandbox client.
const sharedClients = new Map<string, ProxySocketClient>()

export interface FactoryOptions {
  env?: NodeJS.ProcessEnv
}

/** The process-wide client for CREDPROXY_SOCKET; reads the session secret on first use. */
export function getSharedClient(env: NodeJS.ProcessEnv = process.env): ProxySocketClient {
  const raw = env[SOCKET_ENV]
  if (raw === undefined || raw === '') {
    throw new ProxyError('CONNECTION_FAILED', `${SOCKET_ENV} is not set: this process is not running under a credproxy broker`)
  }
  const problem = socketPathProblem(raw)
  if (problem !== undefined) throw new ProxyError('CONNECTION_FAILED', `${SOCKET_ENV} ${problem} (got ${JSON.stringify(raw.slice(0, 200))})`)
  const existing = sharedClients.get(raw)
  if (existing !== undefined && existing.state !== 'CLOSED') return existing
  const client = new ProxySocketClient({ socketPath: raw, secret: readSessionSecret(env) })
  sharedClients.set(raw, client)
  return client
}

export function createTokenStore(options: FactoryOptions & { hostStore?: () => TokenStore } = {}): TokenStore {
  const env = options.env ?? process.env
  if (isProxyMode(env)) return new ProxyTokenStore(getSharedClient(env))
  if (options.hostStore) return options.hostStore()
  throw new ProxyError(
    'CONNECTION_FAILED',
    `no token store: ${SOCKET_ENV} is not set and no host store was given (on the host, use createTokenStore from @credproxy/cli)`,
  )
}

export function createProviderKeyStorage(options: FactoryOptions & { hostStorage?: () => ProviderKeyStorage } = {}): ProviderKeyStorage {
  const env = options.env ?? process.env
  if (isProxyMode(env)) return new ProxyProviderKeyStorage(getSharedClient(env))
  if (options.hostStorage) return options.hostStorage()
  throw new ProxyError(
    'CONNECTION_FAILED',
    `no key storage: ${SOCKET_ENV} is not set and no host storage was given (on the host, use createProviderKeyStorage from @credproxy/cli)`,
  )
}

/** Sandbox-side login through the broker. On the host, run the host OAuth flow instead. */
export function createOAuthAdapter(options: FactoryOptions & { ui: LoginUI }): ProxyOAuthAdapter {
  return new ProxyOAuthAdapter(getSharedClient(options.env ?? process.env), options.ui)
}
