// The host's one error type. Storage, control, OAuth, sandbox and broker code throw a
// CredproxyError with a stable code, a readable message and an optional next step (hint);
// only the CLI (cli.ts) turns a code into an exit code and prints the hint.
// What crosses the socket is core's ProxyError (protocol/errors.ts), never this (the lock
// errors in storage/locks.ts are ProxyErrors: a request that waits on a lock answers with their code).
// No imports: cli.ts loads this module for every command, even `--version`.

/** Every code, with what it means. cli.ts maps each to an exit code (README "Exit codes"). */
export const CREDPROXY_ERROR_CODES = {
  USAGE: 'A flag, argument, environment variable or path given to credproxy cannot be used.',
  NOT_FOUND: 'The named credential, session or provider does not exist.',
  DENIED: 'The session or peer lacks permission.',
  AUTH_REQUIRED: 'The user must log in again.',
  UNAVAILABLE: 'The broker socket, sandbox backend or authorization server is unreachable.',
  KEYRING_UNAVAILABLE: 'The OS keyring (Secret Service, Keychain) refused or did not answer.',
  INVALID_FILE: 'A file credproxy reads is unreadable, not JSON, or fails its schema.',
  ENVELOPE_INVALID: 'An encrypted credential file cannot be opened.',
  COMMAND_NOT_FOUND: 'The command to run does not exist on PATH.',
  CANCELLED: 'The user cancelled (Ctrl-C at a prompt).',
  FAILED: 'The operation failed; the message says why.',
} as const

export type CredproxyErrorCode = keyof typeof CREDPROXY_ERROR_CODES

export interface CredproxyErrorOptions {
  /** The next step for the user, printed under the message. */
  hint?: string | undefined
  /** The underlying error; stays in logs and stack traces, never in a message the sandbox sees. */
  cause?: unknown
}

/** An expected failure: printed as `credproxy: <message>` plus the hint, no stack. */
export class CredproxyError extends Error {
  override name = 'CredproxyError'
  readonly hint: string | undefined

  constructor(
    readonly code: CredproxyErrorCode,
    message: string,
    options: CredproxyErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.hint = options.hint
  }
}

/** Bad input from the user: code USAGE. */
export class UsageError extends CredproxyError {
  override name = 'UsageError'
  constructor(message: string, hint?: string) {
    super('USAGE', message, { hint })
  }
}
