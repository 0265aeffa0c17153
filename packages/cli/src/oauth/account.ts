// Which account a token belongs to: the `sub` claim of its id_token. Used to let a
// login from the sandbox refresh the stored account's token but never replace it
// with another account's (dev-docs/oauth.md "Logins from the sandbox").
import type { OAuthToken } from '@credproxy/core'

/** The id_token's `sub`, when the token has an id_token whose payload decodes; undefined otherwise. */
export function tokenSubject(token: OAuthToken): string | undefined {
  const idToken = (token as Record<string, unknown>)['id_token']
  if (typeof idToken !== 'string') return undefined
  const payload = idToken.split('.')[1]
  if (payload === undefined || payload === '') return undefined
  try {
    // Received straight from the token endpoint by the host (OIDC Core 3.1.3.7): the claims are taken as sent.
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as unknown
    const sub = typeof claims === 'object' && claims !== null ? (claims as Record<string, unknown>)['sub'] : undefined
    return typeof sub === 'string' && sub !== '' ? sub : undefined
  } catch {
    return undefined
  }
}

/** Both tokens name the same account. Unknown on either side is not the same. */
export function sameAccount(a: OAuthToken, b: OAuthToken): boolean {
  const subject = tokenSubject(a)
  return subject !== undefined && subject === tokenSubject(b)
}
