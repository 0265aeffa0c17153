// The one registry of error codes. Each code has a fixed, safe message: only the
// code and this message (never a raw library message) cross the socket.
// dev-docs/protocol.md lists the same codes; a test keeps the two in step.

export const ERROR_CODES = {
  UNKNOWN_VERSION: 'No protocol version is supported by both client and server.',
  UNAUTHORIZED: 'The handshake did not prove the session secret.',
  INVALID_REQUEST: 'The request is malformed or its payload does not match the operation.',
  NOT_FOUND: 'The requested credential does not exist.',
  NOT_GRANTED: 'This session was not granted that provider, bucket, key name or capability.',
  FORBIDDEN: 'The peer is not allowed to use this broker.',
  RATE_LIMITED: 'Too many requests; retry after the given number of seconds.',
  RESOURCE_EXHAUSTED: 'A connection or server limit was reached.',
  CANCELLED: 'The request was cancelled before it completed.',
  RESPONSE_TOO_LARGE: 'The answer exceeds the frame limit of the negotiated protocol version.',
  INTERNAL_ERROR: 'The broker failed while handling the request; details are in the host log.',
  PROVIDER_NOT_CONFIGURED: 'No OAuth configuration exists on the host for that provider.',
  FLOW_INITIATION_FAILED: 'The host could not start the login flow.',
  SESSION_NOT_FOUND: 'No login session has that id for this client.',
  SESSION_ALREADY_USED: 'That login session already completed or was cancelled.',
  SESSION_EXPIRED: 'That login session expired.',
  EXCHANGE_FAILED: 'The authorization code could not be exchanged for a token.',
  ACCESS_DENIED: 'The user or the authorization server denied the login.',
  POLL_FAILED: 'Polling the login session failed.',
  PROVIDER_NOT_FOUND: 'That provider is unknown to the host.',
  REFRESH_NOT_AVAILABLE: 'No refresh token is stored on the host for that credential.',
  REAUTH_REQUIRED: 'The stored grant is no longer valid; log in again on the host.',
  REFRESH_FAILED: 'The host could not refresh the token; try again later.',
  // Raised by the client side only; never sent by a server.
  TIMEOUT: 'The broker did not answer in time.',
  CONNECTION_FAILED: 'The broker socket could not be reached or the connection dropped.',
  PROTOCOL_ERROR: 'The peer broke the wire protocol.',
  SERVER_UNVERIFIED: 'The listener on the socket could not prove the session secret.',
} as const

export type ErrorCode = keyof typeof ERROR_CODES

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CODES, value)
}

export function safeMessage(code: ErrorCode): string {
  return ERROR_CODES[code]
}

export interface ProxyErrorOptions {
  cause?: unknown
  /** Seconds to wait before retrying (RATE_LIMITED). */
  retryAfter?: number
  /**
   * The message was written to be read by the peer (it names a next step, never a secret or a
   * raw library message), so the broker sends it instead of the code's fixed safe message.
   */
  expose?: boolean
}

export class ProxyError extends Error {
  override name = 'ProxyError'
  readonly retryAfter: number | undefined
  readonly expose: boolean

  constructor(
    readonly code: ErrorCode,
    message: string = ERROR_CODES[code],
    options: ProxyErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.retryAfter = options.retryAfter
    this.expose = options.expose === true
  }
}
