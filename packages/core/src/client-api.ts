// `@credproxy/core/client`: the part of the public API a sandboxed process needs
// (socket client, proxy stores, names, errors), without zod or the message schemas,
// so a short-lived `credproxy key get` loads a fraction of `@credproxy/core`.
export * from './protocol/errors.js'
export * from './protocol/names.js'
export * from './protocol/limits.js'
export * from './protocol/versions.js'
export * from './auth/token.js'
export type * from './auth/stores.js'
export { backoffDelay, backoffStep, type BackoffOptions } from './backoff.js'
export type { OpData, OpName, OpPayload, Response } from './protocol/messages.js'
export {
  ProxySocketClient,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_CONNECT_ATTEMPTS,
  DEFAULT_RECONNECT_BASE_DELAY_MS,
  RATE_LIMIT_RETRIES,
  MAX_RATE_LIMIT_WAIT_MS,
  type ClientState,
  type ProxySocketClientOptions,
  type RequestOptions,
} from './client/socket-client.js'
export type { ProxyRequester } from './client/requester.js'
export { ProxyTokenStore } from './auth/proxy-token-store.js'
export { ProxyProviderKeyStorage } from './auth/proxy-provider-key-storage.js'
export { readSessionSecret, SECRET_FD_ENV, SECRET_FILE_ENV } from './auth/session-secret.js'
export {
  createTokenStore,
  createProviderKeyStorage,
  getSharedClient,
  MAX_SOCKET_PATH_BYTES,
  type FactoryOptions,
} from './auth/factories.js'
export { isProxyMode, SOCKET_ENV } from './auth/proxy-mode.js'
