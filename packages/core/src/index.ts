// The only public door of @credproxy/core: named re-exports.
export * from './protocol/errors.js'
export * from './protocol/names.js'
export * from './protocol/name-schemas.js'
export * from './protocol/frame.js'
export * from './protocol/messages.js'
export * from './protocol/handshake.js'
export * from './protocol/limits.js'
export * from './auth/token.js'
export * from './auth/token-schema.js'
export * from './auth/stores.js'
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
export { CLIENT_HANDSHAKE_TIMEOUT_MS } from './client/client-connection.js'
export { MAX_SERVER_MESSAGE_CHARS } from './client/server-message.js'
export type { ProxyRequester } from './client/requester.js'
export { ProxyTokenStore } from './auth/proxy-token-store.js'
export { ProxyProviderKeyStorage } from './auth/proxy-provider-key-storage.js'
export {
  ProxyOAuthAdapter,
  MIN_POLL_INTERVAL_MS,
  OAUTH_CANCEL_TIMEOUT_MS,
  type LoginFlowType,
  type LoginOptions,
  type LoginUI,
  type VerificationInfo,
} from './auth/proxy-oauth-adapter.js'
export { readSessionSecret, SECRET_FD_ENV, SECRET_FILE_ENV, MAX_SECRET_INPUT_BYTES } from './auth/session-secret.js'
export {
  createTokenStore,
  createProviderKeyStorage,
  createOAuthAdapter,
  getSharedClient,
  MAX_SOCKET_PATH_BYTES,
  type FactoryOptions,
} from './auth/factories.js'
export { isProxyMode, SOCKET_ENV } from './auth/proxy-mode.js'
