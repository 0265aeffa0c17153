// Errors the OAuth machinery raises towards the server. Messages written here are
// meant for the client (they name a command, never a secret), so they are marked
// `expose`; anything else crosses as the fixed safe message.
import { ProxyError, type ErrorCode } from '@credproxy/core'

export function exposedError(code: ErrorCode, message: string, cause?: unknown): ProxyError {
  return new ProxyError(code, message, cause === undefined ? { expose: true } : { cause, expose: true })
}

/** The one message a user must see when the grant is gone: what to run next. */
export function reauthRequired(provider: string, bucket: string, cause?: unknown): ProxyError {
  const command = bucket === 'default' ? `credproxy auth login ${provider}` : `credproxy auth login ${provider} --bucket ${bucket}`
  return exposedError('REAUTH_REQUIRED', `the stored grant for ${provider}/${bucket} is no longer valid; run \`${command}\` on the host`, cause)
}
