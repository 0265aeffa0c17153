// What every login flow (device code, PKCE) hands the session manager: what the
// user must see now, and a background result.
import type { OAuthToken } from '@credproxy/core'
import type { OAuthInitiateResult } from './broker.js'

export type LoginDisplay = Omit<OAuthInitiateResult, 'session_id'>

export interface LoginFlow {
  display: LoginDisplay
  /** Settles once: the token from the authorization server (not yet stored), or a ProxyError. */
  result: Promise<OAuthToken>
  /** Current device-flow poll interval in seconds, once the server asked to slow down. */
  slowedDownInterval(): number | undefined
  /** Paste-the-code completion (PKCE); settles `result` too. */
  exchange(code: string): Promise<void>
  /** Stop the background work (polling, loopback listener). Idempotent. */
  abort(): void
}

/** Polls of our own broker never need to be faster than this (ms), nor slower than the max. */
export const MIN_CLIENT_POLL_INTERVAL_MS = 50
export const MAX_CLIENT_POLL_INTERVAL_MS = 1_000

export function clientPollInterval(serverIntervalMs: number): number {
  return Math.min(MAX_CLIENT_POLL_INTERVAL_MS, Math.max(MIN_CLIENT_POLL_INTERVAL_MS, serverIntervalMs))
}
