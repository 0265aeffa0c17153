// The refresh_token grant. Callers (RefreshCoordinator) serialize it: a rotated
// refresh token must never be sent twice, or the server revokes the grant.
import type * as client from 'openid-client'
import type { OAuthToken } from '@credproxy/core'
import { tokenFromResponse } from './oauth-client.js'
import { openidClient } from './openid.js'

/** The new token as the server sent it; a missing refresh_token means "keep the old one". */
export async function refreshTokenGrant(
  configuration: client.Configuration,
  refreshToken: string,
  nowMs: number,
): Promise<OAuthToken> {
  const response = await (await openidClient()).refreshTokenGrant(configuration, refreshToken)
  return tokenFromResponse(response, nowMs)
}
