// The environment a sandboxed command gets: a short allowlist of the host's
// (display and locale settings), never a credproxy variable or anything else
// that might hold a secret, plus the broker coordinates.
import { randomBytes } from 'node:crypto'
import { SANDBOX_BIN_DIR, SANDBOX_SOCKET_DIR, SECRET_FD, type LaunchPlan } from './types.js'

/** Host variables copied into the sandbox when set. Everything else is dropped. */
export const ENV_ALLOWLIST = [
  'TERM',
  'LANG',
  'LANGUAGE',
  'TZ',
  'NO_COLOR',
  'COLORTERM',
  'USER',
  'LOGNAME',
  'LC_ALL',
  'LC_CTYPE',
  'LC_COLLATE',
  'LC_MESSAGES',
  'LC_MONETARY',
  'LC_NUMERIC',
  'LC_TIME',
] as const

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

export interface SandboxEnvOptions {
  /** HOME inside the sandbox. */
  home: string
  socketName: string
  /** PATH after the shim directory; defaults to the host PATH or DEFAULT_PATH. */
  path?: string
  /** Where the secret is inside: a file path (CREDPROXY_SECRET_FILE); default fd 3 (CREDPROXY_SECRET_FD). */
  secretFile?: string
}

export function buildSandboxEnv(hostEnv: NodeJS.ProcessEnv, options: SandboxEnvOptions): Record<string, string> {
  const env: Record<string, string> = {}
  for (const name of ENV_ALLOWLIST) {
    const value = hostEnv[name]
    if (value !== undefined) env[name] = value
  }
  const rest = options.path ?? hostEnv['PATH'] ?? DEFAULT_PATH
  env['PATH'] = `${SANDBOX_BIN_DIR}:${rest}`
  env['HOME'] = options.home
  env['CREDPROXY_SOCKET'] = `${SANDBOX_SOCKET_DIR}/${options.socketName}`
  if (options.secretFile === undefined) env['CREDPROXY_SECRET_FD'] = String(SECRET_FD)
  else env['CREDPROXY_SECRET_FILE'] = options.secretFile
  return env
}

/** What llxprt-code's inner client reads: the socket path, and a capability token on an fd. */
export const LLXPRT_SOCKET_ENV = 'LLXPRT_CREDENTIAL_SOCKET'
export const LLXPRT_TOKEN_FD_ENV = 'LLXPRT_CAPABILITY_FD'

/**
 * `run --legacy-clients`: point llxprt-code's client at the broker and hand it the
 * 64-hex capability token it insists on reading (never the session secret). The
 * broker admits these clients by the peer check alone, so the token guards nothing
 * more; it travels on an extra inherited fd because that is where the client reads it.
 */
export function addLegacyClientEnv(plan: LaunchPlan, socketPath: string): void {
  plan.env[LLXPRT_SOCKET_ENV] = socketPath
  plan.fds.push(Buffer.from(`${randomBytes(32).toString('hex')}\n`, 'utf8'))
  plan.env[LLXPRT_TOKEN_FD_ENV] = String(SECRET_FD + plan.fds.length - 1)
}
