// RFC 8628 device authorization grant. initiate asks the server for a user code
// and returns it at once; polling the token endpoint runs in the background.
import { setTimeout as sleep } from 'node:timers/promises'
import type * as client from 'openid-client'
import { ProxyError, type OAuthToken } from '@credproxy/core'
import { classifyOAuthError, describeFailure } from './classify-error.js'
import { clientPollInterval, type LoginFlow } from './login-flow.js'
import { tokenFromResponse } from './oauth-client.js'
import { openidClient } from './openid.js'
import { DEFAULT_DEVICE_POLL_INTERVAL_MS, type ProviderConfig } from './provider-config.js'

export const DEVICE_CODE_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:device_code'
/** RFC 8628 3.5: each slow_down adds 5 seconds. */
export const SLOW_DOWN_STEP_MS = 5_000
/** Longest wait between polls after network trouble (ms). */
export const MAX_DEVICE_POLL_BACKOFF_MS = 60_000
/**
 * Longest poll interval we accept from a server or its slow_downs (ms). A larger one would
 * overflow Node's timer (2^31-1 ms) into a 1 ms poll loop; a minute still honours any sane server.
 */
export const MAX_DEVICE_POLL_INTERVAL_MS = 60_000

export interface FlowContext {
  now: () => number
  log: (line: string) => void
}

export async function startDeviceFlow(
  configuration: client.Configuration,
  provider: ProviderConfig,
  context: FlowContext,
): Promise<LoginFlow> {
  const client = await openidClient()
  const params: Record<string, string> = { ...provider.authorization_params }
  if (provider.scopes.length > 0) params['scope'] = provider.scopes.join(' ')
  let response: client.DeviceAuthorizationResponse
  try {
    response = await client.initiateDeviceAuthorization(configuration, params)
  } catch (error) {
    context.log(`oauth ${provider.name}: device authorization failed: ${describeFailure(classifyOAuthError(error))}`)
    throw new ProxyError('FLOW_INITIATION_FAILED', undefined, { cause: error })
  }

  // An interval of 0 (or less) from the server would poll in a tight loop: treat it as absent.
  let intervalMs = Math.min(
    MAX_DEVICE_POLL_INTERVAL_MS,
    typeof response.interval === 'number' && response.interval > 0
      ? response.interval * 1000
      : (provider.poll_interval_ms ?? DEFAULT_DEVICE_POLL_INTERVAL_MS),
  )
  // RFC 8628 3.2: the device code dies after expires_in; polling on would only earn expired_token.
  const expiresAt =
    typeof response.expires_in === 'number' && response.expires_in > 0 ? context.now() + response.expires_in * 1000 : Number.POSITIVE_INFINITY
  let slowedDown = false
  const controller = new AbortController()
  const deviceCode = response.device_code

  async function pollUntilDone(): Promise<OAuthToken> {
    let waitMs = intervalMs
    for (;;) {
      try {
        await sleep(Math.max(0, Math.min(waitMs, expiresAt - context.now())), undefined, { signal: controller.signal })
      } catch {
        throw new ProxyError('CANCELLED')
      }
      if (context.now() >= expiresAt) throw new ProxyError('SESSION_EXPIRED')
      try {
        const tokens = await client.genericGrantRequest(configuration, DEVICE_CODE_GRANT_TYPE, { device_code: deviceCode })
        return tokenFromResponse(tokens, context.now())
      } catch (error) {
        if (controller.signal.aborted) throw new ProxyError('CANCELLED')
        const failure = classifyOAuthError(error)
        switch (failure.kind) {
          case 'pending':
            waitMs = intervalMs
            continue
          case 'slow_down':
            intervalMs = Math.min(MAX_DEVICE_POLL_INTERVAL_MS, intervalMs + SLOW_DOWN_STEP_MS)
            slowedDown = true
            waitMs = intervalMs
            continue
          case 'transient':
            waitMs = Math.min(MAX_DEVICE_POLL_BACKOFF_MS, waitMs * 2)
            context.log(`oauth ${provider.name}: device poll failed (${describeFailure(failure)}); retrying in ${waitMs} ms`)
            continue
          case 'denied':
            throw new ProxyError('ACCESS_DENIED', undefined, { cause: error })
          case 'expired':
            throw new ProxyError('SESSION_EXPIRED', undefined, { cause: error })
          default:
            context.log(`oauth ${provider.name}: device poll failed: ${describeFailure(failure)}`)
            throw new ProxyError('POLL_FAILED', undefined, { cause: error })
        }
      }
    }
  }

  const result = pollUntilDone()
  // The session manager observes `result`; this keeps an early abort from being an unhandled rejection.
  result.catch(() => undefined)

  const display: LoginFlow['display'] = {
    flow_type: 'device_code',
    pollIntervalMs: clientPollInterval(intervalMs),
    verification_uri: response.verification_uri,
    user_code: response.user_code,
  }
  if (response.verification_uri_complete !== undefined) display.verification_uri_complete = response.verification_uri_complete
  return {
    display,
    result,
    slowedDownInterval: () => (slowedDown ? Math.ceil(intervalMs / 1000) : undefined),
    exchange: () => Promise.reject(new ProxyError('EXCHANGE_FAILED', 'a device-code login has no code to exchange')),
    abort: () => controller.abort(),
  }
}
