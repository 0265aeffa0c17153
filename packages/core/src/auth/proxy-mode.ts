// Whether this process runs under a broker. Its own module: the CLI asks it before
// anything else, and it must not pull in the socket client to answer.
export const SOCKET_ENV = 'CREDPROXY_SOCKET'

/** True when this process runs under a broker (CREDPROXY_SOCKET is set). */
export function isProxyMode(env: NodeJS.ProcessEnv = process.env): boolean {
  const value = env[SOCKET_ENV]
  return value !== undefined && value !== ''
}
