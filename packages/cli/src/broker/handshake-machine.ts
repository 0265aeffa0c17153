// The broker's side of the handshake as a pure state machine (no sockets, no timers,
// no audit): a parsed frame and the state in, the next state, the frame to send and
// what the connection must do out. The connection (broker-connection.ts) executes the
// result; the client's side is core's client/client-auth.ts.
// Wire spec: dev-docs/protocol.md "Handshake".
import {
  computeClientProof,
  computeServerProof,
  HandshakeFinishRequestSchema,
  HandshakeRequestSchema,
  legacyTokensEqual,
  MAX_LEGACY_PROTOCOL_VERSION,
  MAX_PROTOCOL_VERSION,
  MIN_PROTOCOL_VERSION,
  negotiateVersion,
  proofsEqual,
  safeMessage,
  type ErrorCode,
} from '@credproxy/core'

export const LEGACY_REFUSED_MESSAGE =
  'This broker accepts only protocol v3 clients (mutual proof of the session secret). ' +
  'To serve v1/v2 clients, the operator must restart it with legacy clients allowed (credproxy serve --legacy-token-file PATH).'
export const BAD_TOKEN_MESSAGE = 'The capability token is missing or wrong.'
export const BAD_PROOF_MESSAGE = 'The client proof does not match the session secret.'

/** What the machine needs to know about the session; nonces come from `nonce` so tests can fix them. */
export interface HandshakeConfig {
  sessionId: string
  secret: Buffer
  allowLegacyClients: boolean
  /** undefined: legacy clients are admitted on the peer check alone. */
  legacyToken: string | undefined
  nonce: () => string
}

export type HandshakeState =
  | { phase: 'await_handshake' }
  /** A v3 challenge was sent; the client's proof must answer these nonces. */
  | { phase: 'await_finish'; clientNonce: string; serverNonce: string }
  /** Authenticated (once the connection admitted it). */
  | { phase: 'settled'; version: number }
  /** Refused: the connection answers, half-closes and closes. */
  | { phase: 'failed' }

export const INITIAL_HANDSHAKE_STATE: HandshakeState = { phase: 'await_handshake' }

export type HandshakeFrame = Record<string, unknown>

export type HandshakeAction =
  /** Send the challenge and wait for handshake_finish. */
  | { type: 'continue' }
  /**
   * Authenticated at `version`: admit the connection (a slot must be free), then send
   * `send`; if no slot is free, refuse with refuseAdmission(op, version, ...) instead.
   */
  | { type: 'settle'; version: number; op: 'handshake' | 'handshake_finish' }
  /** Refused: audit `handshake_failed` with code and reason, send `send`, close. */
  | { type: 'fail'; code: ErrorCode; reason: string }

export interface HandshakeStep {
  next: HandshakeState
  send: HandshakeFrame
  action: HandshakeAction
}

/** A refusal: the frame to send and what to audit. */
export interface HandshakeFailure extends HandshakeStep {
  next: { phase: 'failed' }
  action: Extract<HandshakeAction, { type: 'fail' }>
}

function fail(op: string, v: number, code: ErrorCode, message: string, reason: string): HandshakeFailure {
  return { next: { phase: 'failed' }, send: { v, op, ok: false, code, error: message }, action: { type: 'fail', code, reason } }
}

/** The refusal of an authenticated client when every slot of the session is busy. */
export function refuseAdmission(op: string, version: number, maxConnections: number): HandshakeFailure {
  const message = `All ${maxConnections} connections of this session are busy with requests; retry shortly.`
  return fail(op, version, 'RESOURCE_EXHAUSTED', message, 'too-many-connections')
}

/** One frame of the handshake. Only the await_* states take frames; anything else is a caller bug. */
export function handshakeStep(config: HandshakeConfig, state: HandshakeState, frame: HandshakeFrame): HandshakeStep {
  switch (state.phase) {
    case 'await_handshake':
      return onHandshake(config, frame)
    case 'await_finish':
      return onFinish(config, state, frame)
    default:
      throw new Error(`handshakeStep called in state ${state.phase}`)
  }
}

function onHandshake(config: HandshakeConfig, frame: HandshakeFrame): HandshakeStep {
  if (frame['op'] !== 'handshake') {
    return fail('handshake', 1, 'INVALID_REQUEST', 'The first frame must be a handshake.', 'not-a-handshake')
  }
  const parsed = HandshakeRequestSchema.safeParse(frame)
  if (!parsed.success) return fail('handshake', 1, 'INVALID_REQUEST', safeMessage('INVALID_REQUEST'), 'malformed-handshake')
  const { minVersion, maxVersion, capabilityToken, clientNonce } = parsed.data.payload
  const client = { minVersion, maxVersion }
  const replyV = Math.min(Math.max(maxVersion, MIN_PROTOCOL_VERSION), MAX_PROTOCOL_VERSION)
  // Version first, then authentication (PROTOCOL.md "Handshake").
  const best = negotiateVersion({ minVersion: MIN_PROTOCOL_VERSION, maxVersion: MAX_PROTOCOL_VERSION }, client)
  if (best === null) {
    const message = `This broker speaks protocol v${MIN_PROTOCOL_VERSION} to v${MAX_PROTOCOL_VERSION}.`
    return fail('handshake', replyV, 'UNKNOWN_VERSION', message, 'no-common-version')
  }
  if (best >= 3 && clientNonce !== undefined) {
    const serverNonce = config.nonce()
    const serverProof = computeServerProof(config.secret, clientNonce, serverNonce)
    return {
      next: { phase: 'await_finish', clientNonce, serverNonce },
      send: { v: 3, op: 'handshake', ok: true, data: { version: 3, serverNonce, serverProof } },
      action: { type: 'continue' },
    }
  }
  const legacy = negotiateVersion({ minVersion: MIN_PROTOCOL_VERSION, maxVersion: MAX_LEGACY_PROTOCOL_VERSION }, client)
  if (legacy === null) return fail('handshake', replyV, 'INVALID_REQUEST', 'A v3 handshake needs a clientNonce.', 'missing-nonce')
  if (!config.allowLegacyClients) return fail('handshake', legacy, 'UNAUTHORIZED', LEGACY_REFUSED_MESSAGE, 'legacy-not-allowed')
  if (config.legacyToken !== undefined && !legacyTokensEqual(config.legacyToken, capabilityToken)) {
    const reason = capabilityToken === undefined ? 'missing-token' : 'bad-token'
    return fail('handshake', legacy, 'UNAUTHORIZED', BAD_TOKEN_MESSAGE, reason)
  }
  return {
    next: { phase: 'settled', version: legacy },
    send: { v: legacy, op: 'handshake', ok: true, data: { version: legacy } },
    action: { type: 'settle', version: legacy, op: 'handshake' },
  }
}

function onFinish(config: HandshakeConfig, state: { clientNonce: string; serverNonce: string }, frame: HandshakeFrame): HandshakeStep {
  const parsed = HandshakeFinishRequestSchema.safeParse(frame)
  if (!parsed.success) return fail('handshake_finish', 3, 'INVALID_REQUEST', safeMessage('INVALID_REQUEST'), 'malformed-finish')
  const expected = computeClientProof(config.secret, state.serverNonce, state.clientNonce)
  if (!proofsEqual(expected, parsed.data.payload.clientProof)) {
    return fail('handshake_finish', 3, 'UNAUTHORIZED', BAD_PROOF_MESSAGE, 'bad-proof')
  }
  return {
    next: { phase: 'settled', version: 3 },
    send: { v: 3, op: 'handshake_finish', ok: true, data: { session: config.sessionId } },
    action: { type: 'settle', version: 3, op: 'handshake_finish' },
  }
}
