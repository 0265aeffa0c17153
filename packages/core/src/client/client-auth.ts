// What the client proves in the handshake, and the handshake frames it sends.
// Normative spec: dev-docs/protocol.md "Handshake".
import { computeClientProof, computeServerProof, generateNonce, proofsEqual } from '../protocol/handshake.js'
import { MAX_LEGACY_PROTOCOL_VERSION, MAX_PROTOCOL_VERSION, MIN_PROTOCOL_VERSION } from '../protocol/versions.js'

/** v3: mutual HMAC proof of the session secret. legacy: v1/v2 bearer token. */
export type ClientAuth = { kind: 'v3'; secret: Buffer } | { kind: 'legacy'; token: string }

export const V3_PROTOCOL_VERSION = 3

export interface HandshakeHello {
  frame: Record<string, unknown>
  /** Present for v3: the nonce the server's proof must cover. */
  clientNonce?: string
}

export function buildHello(auth: ClientAuth): HandshakeHello {
  if (auth.kind === 'legacy') {
    const payload = { minVersion: MIN_PROTOCOL_VERSION, maxVersion: MAX_LEGACY_PROTOCOL_VERSION, capabilityToken: auth.token }
    return { frame: { v: MAX_LEGACY_PROTOCOL_VERSION, op: 'handshake', payload } }
  }
  const clientNonce = generateNonce()
  const payload = { minVersion: MIN_PROTOCOL_VERSION, maxVersion: MAX_PROTOCOL_VERSION, clientNonce }
  return { frame: { v: V3_PROTOCOL_VERSION, op: 'handshake', payload }, clientNonce }
}

/** True when the server proved the secret for this exact pair of nonces. */
export function serverProofValid(secret: Buffer, clientNonce: string, serverNonce: string, serverProof: string): boolean {
  return proofsEqual(computeServerProof(secret, clientNonce, serverNonce), serverProof)
}

export function buildFinish(secret: Buffer, serverNonce: string, clientNonce: string): Record<string, unknown> {
  return { v: V3_PROTOCOL_VERSION, op: 'handshake_finish', payload: { clientProof: computeClientProof(secret, serverNonce, clientNonce) } }
}
