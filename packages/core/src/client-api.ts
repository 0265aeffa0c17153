/**
 * `@credproxy/core/client`: the part of the public API a sandboxed process needs (socket
 * client, proxy-backed stores, names, errors, token helpers), without zod or the message
 * schemas, so a short-lived `credproxy key get` loads a fraction of `@credproxy/core`.
 * `@credproxy/core` (index.ts) re-exports all of it and adds what a broker needs.
 * Every name is listed on purpose.
 *
 * @packageDocumentation
 */

/**
 * Errors: every failure that crosses the socket is a `ProxyError` with a stable `code` from
 * `ERROR_CODES` and that code's fixed safe message (unless the broker marked it `expose`).
 */
export { ERROR_CODES, ProxyError, isErrorCode, safeMessage, type ErrorCode, type ProxyErrorOptions } from './protocol/errors.js'

/** Provider, bucket and key names: the one pattern each, checked on both sides. */
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

/** Protocol versions, the version each op needs, and the per-connection in-flight cap (dev-docs/protocol.md). */
export { MAX_LEGACY_PROTOCOL_VERSION, MAX_PROTOCOL_VERSION, MIN_PROTOCOL_VERSION, OP_MIN_VERSION } from './protocol/versions.js'
export { MAX_IN_FLIGHT_REQUESTS } from './protocol/limits.js'
export type { OpData, OpName, OpPayload, Response } from './protocol/messages.js'

/** Tokens: what leaves the host (`sanitizeTokenForProxy`), merging after a refresh, time left. */
export { HOST_ONLY_TOKEN_FIELDS, mergeRefreshedToken, sanitizeTokenForProxy, secondsUntilExpiry, type OAuthToken } from './auth/token.js'
/** The store interfaces both the host stores and the proxy-backed stores implement. */
export type { BucketStats, LockOptions, ProviderKeyStorage, TokenStore } from './auth/stores.js'

/** The one retry delay rule (exponential, capped, equal jitter). */
export { backoffDelay, backoffStep, type BackoffOptions } from './backoff.js'

/** The socket client a sandboxed program uses to reach the broker (dev-docs/protocol.md section 10). */
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

/** Stores backed by the broker, for code written against TokenStore / ProviderKeyStorage. */
export { ProxyTokenStore } from './auth/proxy-token-store.js'
export { ProxyProviderKeyStorage } from './auth/proxy-provider-key-storage.js'
/** Reading the session secret the launcher handed over (an inherited fd or a 0600 file). */
export { readSessionSecret, SECRET_FD_ENV, SECRET_FILE_ENV } from './auth/session-secret.js'
/** Factories: a proxy-backed store inside a sandbox (CREDPROXY_SOCKET set), with one shared client per socket. */
export {
  createTokenStore,
  createProviderKeyStorage,
  getSharedClient,
  MAX_SOCKET_PATH_BYTES,
  type FactoryOptions,
} from './auth/factories.js'
export { isProxyMode, SOCKET_ENV } from './auth/proxy-mode.js'
