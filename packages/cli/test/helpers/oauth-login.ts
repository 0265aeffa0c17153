// Log in through the host broker's device flow, approved at the test authorization server.
import type { OAuthToken } from '@credproxy/core'
import type { HostOAuth } from '../../src/credentials/host-oauth.js'
import type { AuthServer } from './auth-server.js'

let logins = 0

export async function deviceLogin(broker: HostOAuth, as: AuthServer, provider: string, bucket: string): Promise<OAuthToken> {
  // One broker session per login, as a user would have: the per-session login rate limit is not under test here.
  const owner = `test-login-${(logins += 1)}`
  const init = await broker.logins.initiate(provider, bucket, owner)
  await as.approveDevice(init.user_code ?? '')
  for (let i = 0; i < 400; i += 1) {
    const r = await broker.logins.poll(init.session_id, owner)
    if (r.status === 'complete') return r.token
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  throw new Error('device login did not complete')
}
