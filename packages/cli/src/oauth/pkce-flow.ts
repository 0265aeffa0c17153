// Authorization code + PKCE (RFC 7636) with a loopback redirect on 127.0.0.1.
// The code arrives at the listener, or the user pastes it (or the whole redirect
// URL); both paths exchange with the same verifier, and only the first one counts.
import type * as client from 'openid-client'
import { ProxyError, type OAuthToken } from '@credproxy/core'
import { ACCOUNT_REFUSED_MESSAGE } from './account-check.js'
import { classifyOAuthError, describeFailure } from './classify-error.js'
import { exposedError } from './errors.js'
import type { FlowContext } from './device-flow.js'
import { startLoopbackListener, type LoopbackListener } from './loopback-listener.js'
import type { LoginFlow } from './login-flow.js'
import { tokenFromResponse } from './oauth-client.js'
import { openidClient } from './openid.js'
import type { ProviderConfig } from './provider-config.js'
import { escapeUntrusted } from '../escape.js'

/** How often a client should poll our broker while the browser step runs (ms). */
export const PKCE_CLIENT_POLL_INTERVAL_MS = 1_000

export interface PkceFlowContext extends FlowContext {
  /** Open the host browser on the authorization URL (host logins only). */
  openBrowser?: (url: string) => Promise<boolean>
  /** null when the new token may replace the stored one; else why not (login CSRF check). */
  checkAccount?: (token: OAuthToken) => Promise<string | null>
}

export async function startPkceFlow(
  configuration: client.Configuration,
  provider: ProviderConfig,
  context: PkceFlowContext,
): Promise<LoginFlow> {
  const client = await openidClient()
  const verifier = client.randomPKCECodeVerifier()
  const challenge = await client.calculatePKCECodeChallenge(verifier)
  const state = client.randomState()
  let settled = false
  let resolveResult!: (token: OAuthToken) => void
  let rejectResult!: (error: unknown) => void
  const result = new Promise<OAuthToken>((resolve, reject) => {
    resolveResult = resolve
    rejectResult = reject
  })
  result.catch(() => undefined)

  async function complete(currentUrl: URL): Promise<void> {
    if (settled) throw new ProxyError('SESSION_ALREADY_USED')
    const error = currentUrl.searchParams.get('error')
    if (error !== null) {
      settled = true
      listener.close()
      const code = error === 'access_denied' ? 'ACCESS_DENIED' : 'EXCHANGE_FAILED'
      context.log(`oauth ${provider.name}: authorization failed: error=${escapeUntrusted(error, 64)}`)
      rejectResult(new ProxyError(code))
      throw new ProxyError(code)
    }
    try {
      const tokens = await client.authorizationCodeGrant(configuration, currentUrl, {
        pkceCodeVerifier: verifier,
        expectedState: state,
      })
      if (settled) throw new ProxyError('SESSION_ALREADY_USED')
      const token = tokenFromResponse(tokens, context.now())
      const refusal = (await context.checkAccount?.(token)) ?? null
      if (refusal !== null) {
        // The login stays open: the user's own callback may still come.
        context.log(`oauth ${provider.name}: ${refusal}`)
        throw exposedError('EXCHANGE_FAILED', ACCOUNT_REFUSED_MESSAGE)
      }
      if (settled) throw new ProxyError('SESSION_ALREADY_USED')
      settled = true
      listener.close()
      resolveResult(token)
    } catch (caught) {
      if (caught instanceof ProxyError) throw caught
      // A wrong pasted code can be retried; the login stays open until it expires.
      context.log(`oauth ${provider.name}: code exchange failed: ${describeFailure(classifyOAuthError(caught))}`)
      throw new ProxyError('EXCHANGE_FAILED', undefined, { cause: caught })
    }
  }

  let listener: LoopbackListener
  try {
    listener = await startLoopbackListener(provider.redirect_port ?? 0, state, async (url) => {
      try {
        await complete(url)
        return { status: 200, message: 'Login complete. You can close this window and return to the terminal.', done: true }
      } catch (error) {
        const denied = error instanceof ProxyError && error.code === 'ACCESS_DENIED'
        const refused = error instanceof ProxyError && error.message === ACCOUNT_REFUSED_MESSAGE
        const message = denied ? 'The login was denied.' : refused ? `The login failed: ${ACCOUNT_REFUSED_MESSAGE}.` : 'The login failed; see the terminal.'
        return { status: 400, message, done: settled }
      }
    })
  } catch (error) {
    context.log(`oauth ${provider.name}: cannot listen on 127.0.0.1:${provider.redirect_port ?? 0}: ${(error as Error).message}`)
    throw new ProxyError('FLOW_INITIATION_FAILED', undefined, { cause: error })
  }

  const params: Record<string, string> = {
    ...provider.authorization_params,
    redirect_uri: listener.redirectUri,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state,
  }
  if (provider.scopes.length > 0) params['scope'] = provider.scopes.join(' ')
  // Without prompt=consent many servers (oidc-provider among them) drop offline_access: no refresh token.
  if (provider.scopes.includes('offline_access') && params['prompt'] === undefined) params['prompt'] = 'consent'
  let authUrl: URL
  try {
    authUrl = client.buildAuthorizationUrl(configuration, params)
  } catch (error) {
    listener.close()
    throw new ProxyError('FLOW_INITIATION_FAILED', undefined, { cause: error })
  }
  if (context.openBrowser !== undefined) void context.openBrowser(authUrl.href)

  return {
    display: { flow_type: 'pkce_redirect', pollIntervalMs: PKCE_CLIENT_POLL_INTERVAL_MS, auth_url: authUrl.href },
    result,
    slowedDownInterval: () => undefined,
    async exchange(code: string) {
      const trimmed = code.trim()
      let url: URL
      if (/^https?:\/\//.test(trimmed)) {
        url = new URL(trimmed)
        if (url.searchParams.get('state') !== state) throw new ProxyError('EXCHANGE_FAILED', 'that redirect URL belongs to another login')
        url = new URL(`${listener.redirectUri}${url.search}`)
      } else {
        url = new URL(listener.redirectUri)
        url.searchParams.set('code', trimmed)
        url.searchParams.set('state', state)
        // The user pasted only the code; the issuer check (RFC 9207) has nothing to compare.
        const issuer = configuration.serverMetadata().issuer
        if (configuration.serverMetadata().authorization_response_iss_parameter_supported === true) url.searchParams.set('iss', issuer)
      }
      await complete(url)
    },
    abort() {
      listener.close()
      if (!settled) {
        settled = true
        rejectResult(new ProxyError('CANCELLED'))
      }
    },
  }
}
