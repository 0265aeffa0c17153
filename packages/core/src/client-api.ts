// `@credproxy/core/client`: the part of the public API a sandboxed process needs
// (socket client, proxy stores, names, errors), without zod or the message schemas,
// so a short-lived `credproxy key get` loads a fraction of `@credproxy/core`.
// Named on purpose, like index.ts (which documents each group); everything here is also there.
export { ERROR_CODES, ProxyError, isErrorCode, safeMessage, type ErrorCode, type ProxyErrorOptions } from './protocol/errors.js'
export {
  BUCKET_NAME_PATTERN,
  DEFAULT_BUCKET,
  KEY_NAME_PATTERN,
  PROVIDER_NAME_PATTERN,
  RESERVED_NAMES,
  isBucketName,
  isKeyName,
  isProviderName,
  isReservedName,
} from './protocol/names.js'
export { MAX_IN_FLIGHT_REQUESTS } from './protocol/limits.js'
export { MAX_LEGACY_PROTOCOL_VERSION, MAX_PROTOCOL_VERSION, MIN_PROTOCOL_VERSION, OP_MIN_VERSION } from './protocol/versions.js'
export { HOST_ONLY_TOKEN_FIELDS, mergeRefreshedToken, sanitizeTokenForProxy, secondsUntilExpiry, type OAuthToken } from './auth/token.js'
export type { BucketStats, LockOptions, ProviderKeyStorage, TokenStore } from './auth/stores.js'
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
