// Documented exit codes of the credproxy command (README "Exit codes").
// `run` and `exec` exit with the wrapped command's own code instead.
export const EXIT = {
  OK: 0,
  FAILURE: 1,
  USAGE: 2,
  NOT_FOUND: 3,
  /** NOT_GRANTED, UNAUTHORIZED, FORBIDDEN: the session or peer lacks permission. */
  DENIED: 4,
  /** REAUTH_REQUIRED, ACCESS_DENIED, expired login: the user must log in again. */
  AUTH_REQUIRED: 5,
  /** The broker socket, keyring, sandbox backend or authorization server is unreachable. */
  UNAVAILABLE: 6,
} as const
