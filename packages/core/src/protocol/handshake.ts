// Handshake math shared by client and server: version negotiation and the v3
// mutual proofs. Normative spec and a worked example: dev-docs/protocol.md "Handshake".
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'

/** Session secrets are 32 random bytes, written as 64 lowercase hex characters wherever they travel. */
export const SESSION_SECRET_BYTES = 32
export const NONCE_BYTES = 32
/** A client that has not completed the handshake by then is disconnected. */
export const HANDSHAKE_TIMEOUT_MS = 2_000
/** After a failed handshake the server closes the socket within this time. */
export const FAILED_HANDSHAKE_CLOSE_MS = 3_000

export const SERVER_PROOF_LABEL = 'credproxy/v3/server'
export const CLIENT_PROOF_LABEL = 'credproxy/v3/client'

const HEX64 = /^[0-9a-f]{64}$/

export function isHex64(value: unknown): value is string {
  return typeof value === 'string' && HEX64.test(value)
}

export function generateSessionSecret(): Buffer {
  return randomBytes(SESSION_SECRET_BYTES)
}

export function generateNonce(): string {
  return randomBytes(NONCE_BYTES).toString('hex')
}

/** Parse a secret from its 64-hex form (surrounding whitespace ignored). Throws on anything else. */
export function parseSessionSecret(text: string): Buffer {
  const trimmed = text.trim()
  if (!HEX64.test(trimmed)) throw new Error('session secret must be 64 lowercase hex characters')
  return Buffer.from(trimmed, 'hex')
}

/**
 * The version both sides speak: min(server max, client max), if that is at least
 * the client's and the server's minimum; otherwise null (UNKNOWN_VERSION).
 */
export function negotiateVersion(
  server: { minVersion: number; maxVersion: number },
  client: { minVersion: number; maxVersion: number },
): number | null {
  const version = Math.min(server.maxVersion, client.maxVersion)
  if (version < client.minVersion || version < server.minVersion || client.minVersion > client.maxVersion) return null
  return version
}

/** HMAC-SHA256(secret, "credproxy/v3/server|<clientNonce>|<serverNonce>") as hex. */
export function computeServerProof(secret: Buffer, clientNonce: string, serverNonce: string): string {
  return createHmac('sha256', secret).update(`${SERVER_PROOF_LABEL}|${clientNonce}|${serverNonce}`, 'utf8').digest('hex')
}

/** HMAC-SHA256(secret, "credproxy/v3/client|<serverNonce>|<clientNonce>") as hex. */
export function computeClientProof(secret: Buffer, serverNonce: string, clientNonce: string): string {
  return createHmac('sha256', secret).update(`${CLIENT_PROOF_LABEL}|${serverNonce}|${clientNonce}`, 'utf8').digest('hex')
}

/** Constant-time comparison of two hex proofs of any length. */
export function proofsEqual(expectedHex: string, actualHex: unknown): boolean {
  if (typeof actualHex !== 'string') return false
  return timingSafeEqual(sha256(expectedHex), sha256(actualHex))
}

/** Legacy bearer tokens are compared by hashing both sides, so length leaks nothing. */
export function legacyTokensEqual(expected: string, presented: unknown): boolean {
  if (typeof presented !== 'string') return false
  return timingSafeEqual(sha256(expected), sha256(presented))
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest()
}
