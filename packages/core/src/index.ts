/**
 * `@credproxy/core`: the credproxy wire protocol and what runs on both sides of the sandbox.
 *
 * This file is the only public door, and every name is listed on purpose: what a broker
 * needs to speak the protocol (frames, handshake, request schemas, error codes, limits),
 * what a sandboxed program needs to ask for credentials (socket client, proxy-backed stores,
 * factories), and the token helpers both share. The answer schemas the client checks by hand
 * (protocol/messages.ts `OP_DATA_SCHEMAS`, `ResponseSchema`, ...) stay internal.
 * `@credproxy/core/client` (client-api.ts) is the lighter door for sandboxed processes: no zod.
 * The wire format, codes and limits are specified in dev-docs/protocol.md.
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
/** The same name rules as zod schemas, for command-line and config validation. */
export { BucketName, KeyName, ProviderName } from './protocol/name-schemas.js'

/** Framing: a 4-byte big-endian length, then a UTF-8 JSON object (dev-docs/protocol.md section 2). */
export {
  FRAME_COALESCE_BELOW_BYTES,
  FRAME_HEADER_BYTES,
  FRAME_STAGING_BYTES,
  FrameDecoder,
  FrameError,
  MAX_FRAME_BYTES,
  MAX_FRAME_BYTES_V1,
  PARTIAL_FRAME_TIMEOUT_MS,
  decodeFrameBody,
  encodeFrame,
  maxFrameBytesFor,
  type FrameErrorReason,
} from './protocol/frame.js'

/** Requests as the broker validates them, with the protocol version each op needs (section 4 and 7). */
export {
  HandshakeFinishRequestSchema,
  HandshakeRequestSchema,
  MAX_LEGACY_PROTOCOL_VERSION,
  MAX_PROTOCOL_VERSION,
  MIN_PROTOCOL_VERSION,
  OP_MIN_VERSION,
  OP_PAYLOAD_SCHEMAS,
  RequestEnvelopeSchema,
  RequestIdSchema,
  isOpName,
  type HandshakeRequest,
  type OpData,
  type OpName,
  type OpPayload,
  type RequestEnvelope,
  type Response,
} from './protocol/messages.js'

/** The v3 mutual-proof handshake and the legacy bearer check (section 3). */
export {
  CLIENT_PROOF_LABEL,
  FAILED_HANDSHAKE_CLOSE_MS,
  HANDSHAKE_TIMEOUT_MS,
  NONCE_BYTES,
  SERVER_PROOF_LABEL,
  SESSION_SECRET_BYTES,
  computeClientProof,
  computeServerProof,
  generateNonce,
  generateSessionSecret,
  legacyTokensEqual,
  negotiateVersion,
  parseSessionSecret,
  proofsEqual,
} from './protocol/handshake.js'
export { MAX_IN_FLIGHT_REQUESTS } from './protocol/limits.js'

/** Tokens: the wire schema, and what leaves the host (`sanitizeTokenForProxy`) or merges after a refresh. */
export { OAuthTokenSchema } from './protocol/token-schema.js'
export { HOST_ONLY_TOKEN_FIELDS, mergeRefreshedToken, sanitizeTokenForProxy, secondsUntilExpiry, type OAuthToken } from './auth/token.js'
/** The store interfaces both the host stores and the proxy-backed stores implement. */
export type { BucketStats, LockOptions, ProviderKeyStorage, TokenStore } from './auth/stores.js'

/** The one retry delay rule (exponential, capped, equal jitter). */
export { backoffDelay, backoffStep, type BackoffOptions } from './backoff.js'

/** The socket client a sandboxed program uses to reach the broker (section 10). */
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

/** Stores and the OAuth login flow backed by the broker, for code written against TokenStore. */
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
/** Reading the session secret the launcher handed over (an inherited fd or a 0600 file, section 3.3). */
export { readSessionSecret, SECRET_FD_ENV, SECRET_FILE_ENV, MAX_SECRET_INPUT_BYTES, SECRET_FD_WAIT_MS } from './auth/session-secret.js'
/** Factories: a proxy-backed store inside a sandbox (CREDPROXY_SOCKET set), with one shared client per socket. */
export {
  createTokenStore,
  createProviderKeyStorage,
  createOAuthAdapter,
  getSharedClient,
  MAX_SOCKET_PATH_BYTES,
  type FactoryOptions,
} from './auth/factories.js'
export { isProxyMode, SOCKET_ENV } from './auth/proxy-mode.js'
