/**
 * `@credproxy/core`: the credproxy wire protocol and what runs on both sides of the sandbox.
 *
 * This file is the only full public door. It re-exports the client door
 * (`@credproxy/core/client`, client-api.ts: errors, names, token helpers, store interfaces,
 * the socket client, proxy-backed stores, factories) and adds, each name listed on purpose,
 * what a broker needs to speak the protocol: frames, the handshake, request schemas, the token
 * schema and the remaining limits. The answer schemas the client checks by hand
 * (protocol/messages.ts `OP_DATA_SCHEMAS`, `ResponseSchema`, ...) stay internal.
 * The wire format, codes and limits are specified in dev-docs/protocol.md.
 *
 * @packageDocumentation
 */

// The curated client door, whole: its names are listed (and documented) in client-api.ts.
export * from './client-api.js'

/** The name rules as zod schemas, for command-line and config validation. */
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

/** Requests as the broker validates them (sections 4 and 7). */
export {
  HandshakeFinishRequestSchema,
  HandshakeRequestSchema,
  OP_PAYLOAD_SCHEMAS,
  RequestEnvelopeSchema,
  RequestIdSchema,
  isOpName,
  type HandshakeRequest,
  type RequestEnvelope,
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

/** The token's wire schema (zod): required fields, provider extras kept. */
export { OAuthTokenSchema } from './protocol/token-schema.js'

/** Client limits that only the full door's users tune or display (section 9). */
export { CLIENT_HANDSHAKE_TIMEOUT_MS } from './client/client-connection.js'
export { MAX_SERVER_MESSAGE_CHARS } from './client/server-message.js'
export { MAX_SECRET_INPUT_BYTES } from './auth/session-secret.js'

/** The OAuth login flow driven through the broker (initiate, poll, cancel) for a sandboxed CLI. */
export {
  ProxyOAuthAdapter,
  MIN_POLL_INTERVAL_MS,
  OAUTH_CANCEL_TIMEOUT_MS,
  type LoginFlowType,
  type LoginOptions,
  type LoginUI,
  type VerificationInfo,
} from './auth/proxy-oauth-adapter.js'
export { createOAuthAdapter } from './auth/factories.js'
