// Every limit of one broker session: a named constant with its unit, and the
// ServerLimits record a server is built with (tests inject short ones).
// Listed once for users in dev-docs/protocol.md "Limits".
import { FAILED_HANDSHAKE_CLOSE_MS, HANDSHAKE_TIMEOUT_MS, MAX_IN_FLIGHT_REQUESTS, PARTIAL_FRAME_TIMEOUT_MS } from '@credproxy/core'

export { FAILED_HANDSHAKE_CLOSE_MS, HANDSHAKE_TIMEOUT_MS, PARTIAL_FRAME_TIMEOUT_MS }

/** Requests of one connection being handled at once; past it the server stops reading that socket until one ends (`cancel` is exempt). */
export const MAX_IN_FLIGHT_PER_CONNECTION = MAX_IN_FLIGHT_REQUESTS
/**
 * Authenticated connections of one session. A client that completes its handshake
 * at the cap takes the slot of the least recently active idle one (which the
 * client library reopens on its next request); with none idle it gets RESOURCE_EXHAUSTED.
 */
export const MAX_CONNECTIONS_PER_SESSION = 64
/**
 * Connections of one session still in their handshake. A new connection at the cap
 * takes the slot of the oldest one, so held sockets cannot lock a real client out.
 */
export const MAX_PENDING_HANDSHAKES_PER_SESSION = 64
/** Largest frame body accepted before the handshake settles (bytes); a handshake needs well under 1 KiB. */
export const MAX_HANDSHAKE_FRAME_BYTES = 8_192
/**
 * Answer bytes a connection may leave unwritten (a peer that does not read)
 * before the server stops reading its requests, until the peer catches up.
 */
export const MAX_BUFFERED_BYTES_PER_CONNECTION = 1_048_576
/** stop() waits this long for in-flight requests and peers to finish before it cuts them off. */
export const DRAIN_TIMEOUT_MS = 2_000
/** Sustained requests per second per connection (token bucket); over it gives RATE_LIMITED. */
export const RATE_LIMIT_PER_SECOND = 60
/** Requests a connection may send at once above the sustained rate (token bucket size). */
export const RATE_LIMIT_BURST = 200

export interface ServerLimits {
  maxInFlightPerConnection: number
  maxConnectionsPerSession: number
  maxPendingHandshakesPerSession: number
  handshakeTimeoutMs: number
  failedHandshakeCloseMs: number
  partialFrameTimeoutMs: number
  maxBufferedBytesPerConnection: number
  drainTimeoutMs: number
  rateLimitPerSecond: number
  rateLimitBurst: number
}

export const DEFAULT_SERVER_LIMITS: Readonly<ServerLimits> = Object.freeze({
  maxInFlightPerConnection: MAX_IN_FLIGHT_PER_CONNECTION,
  maxConnectionsPerSession: MAX_CONNECTIONS_PER_SESSION,
  maxPendingHandshakesPerSession: MAX_PENDING_HANDSHAKES_PER_SESSION,
  handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
  failedHandshakeCloseMs: FAILED_HANDSHAKE_CLOSE_MS,
  partialFrameTimeoutMs: PARTIAL_FRAME_TIMEOUT_MS,
  maxBufferedBytesPerConnection: MAX_BUFFERED_BYTES_PER_CONNECTION,
  drainTimeoutMs: DRAIN_TIMEOUT_MS,
  rateLimitPerSecond: RATE_LIMIT_PER_SECOND,
  rateLimitBurst: RATE_LIMIT_BURST,
})

/** Defaults overridden by `partial`; every value must be a positive finite number. */
export function resolveLimits(partial: Partial<ServerLimits> = {}): ServerLimits {
  const limits: ServerLimits = { ...DEFAULT_SERVER_LIMITS }
  for (const [name, value] of Object.entries(partial) as Array<[keyof ServerLimits, number | undefined]>) {
    if (value === undefined || !Object.hasOwn(DEFAULT_SERVER_LIMITS, name)) continue
    if (!Number.isFinite(value) || value <= 0) throw new RangeError(`server limit ${name} must be a positive number`)
    limits[name] = value
  }
  return limits
}
