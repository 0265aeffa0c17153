// Login CSRF defence: a login may replace the stored credential of provider/bucket only
// with one for the same account. The account is the id_token's `sub` (OpenID Connect);
// without an id_token on either side there is nothing to compare (see dev-docs/oauth.md).
import type { OAuthToken } from '@credproxy/core'

/** The `sub` of an id_token, read without verification: the token is our own stored one, or was verified at the exchange. */
export function idTokenSubject(token: object | null | undefined): string | undefined {
  const idToken = (token as { id_token?: unknown } | null | undefined)?.id_token
  if (typeof idToken !== 'string') return undefined
  const payload = idToken.split('.')[1]
  if (payload === undefined) return undefined
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { sub?: unknown }
    return typeof claims.sub === 'string' ? claims.sub : undefined
  } catch {
    return undefined
  }
}

function logoutCommand(provider: string, bucket: string): string {
  return `credproxy auth logout ${provider}${bucket === 'default' ? '' : ` --bucket ${bucket}`}`
}

/** What the browser and the client are told; the host log gets the full reason. */
export const ACCOUNT_REFUSED_MESSAGE = 'this login is for a different account than the one stored on the host and was refused; see the host terminal'

/** null when the login may be stored; otherwise the reason (for the host log), naming the fix. */
export function accountMismatch(provider: string, bucket: string, stored: OAuthToken | null, fresh: OAuthToken): string | null {
  const before = idTokenSubject(stored)
  const after = idTokenSubject(fresh)
  if (before === undefined || after === undefined || before === after) return null
  return (
    `the login returned a different account than the one stored for ${provider}/${bucket}; it was refused ` +
    `(another local user may have completed it). To switch accounts on purpose, run \`${logoutCommand(provider, bucket)}\` first, then log in again`
  )
}
