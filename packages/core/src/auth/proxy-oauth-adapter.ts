// Login from inside the sandbox: the host runs the OAuth flow and keeps the
// refresh token; this side only shows the user what to do and waits.
// Ops: oauth_initiate, oauth_poll, oauth_exchange, oauth_cancel (dev-docs/protocol.md).
import type { ProxyRequester } from '../client/requester.js'
import { ProxyError } from '../protocol/errors.js'
import type { OpData } from '../protocol/messages.js'
import { withBucket } from './proxy-token-store.js'
import { sanitizeTokenForProxy, type OAuthToken } from './token.js'

/** Polls are never closer together than this, whatever the host suggests. */
export const MIN_POLL_INTERVAL_MS = 250
/** oauth_cancel after an abort gets this long before we stop waiting for it. */
export const OAUTH_CANCEL_TIMEOUT_MS = 2_000

export type LoginFlowType = OpData<'oauth_initiate'>['flow_type']

export interface VerificationInfo {
  provider: string
  bucket: string | undefined
  flowType: LoginFlowType
  /** Open this (redirect flows). */
  authUrl?: string
  /** Device flow: open this and enter userCode. */
  verificationUri?: string
  userCode?: string
  /** Device flow: a URL with the code filled in. */
  verificationUriComplete?: string
}

export interface LoginUI {
  showVerification(info: VerificationInfo): void
  showProgress(text: string): void
  /** Redirect flows: ask the user to paste the code; the signal aborts the prompt when the host completed the login first. */
  promptForCode?(options: { signal: AbortSignal }): Promise<string>
}

export interface LoginOptions {
  signal?: AbortSignal
}

export class ProxyOAuthAdapter {
  readonly #client: ProxyRequester
  readonly #ui: LoginUI

  constructor(client: ProxyRequester, ui: LoginUI) {
    this.#client = client
    this.#ui = ui
  }

  /** Runs one login to completion and returns the sanitized token (the host stored the full one). */
  async login(provider: string, bucket?: string, options: LoginOptions = {}): Promise<OAuthToken> {
    const outer = options.signal
    if (outer?.aborted) throw new ProxyError('CANCELLED', 'login was cancelled')
    const started = await this.#client.request('oauth_initiate', withBucket({ provider }, bucket), outer ? { signal: outer } : {})
    const sessionId = started.session_id

    // One controller ends every wait of this login: the caller's abort, or the winning branch.
    const controller = new AbortController()
    const onOuterAbort = () => controller.abort()
    outer?.addEventListener('abort', onOuterAbort, { once: true })
    try {
      this.#ui.showVerification(verificationInfo(provider, bucket, started))
      const token = await this.#complete(started, controller.signal)
      return sanitizeTokenForProxy(token)
    } catch (error) {
      if (outer?.aborted) {
        await this.#cancelSession(sessionId)
        throw new ProxyError('CANCELLED', 'login was cancelled')
      }
      throw error
    } finally {
      outer?.removeEventListener('abort', onOuterAbort)
      controller.abort()
    }
  }

  async #complete(started: OpData<'oauth_initiate'>, signal: AbortSignal): Promise<OAuthToken> {
    const promptForCode = this.#ui.promptForCode?.bind(this.#ui)
    if (started.flow_type === 'device_code' || promptForCode === undefined) {
      this.#ui.showProgress('Waiting for you to approve the login…')
      return this.#poll(started.session_id, started.pollIntervalMs, signal)
    }
    // Redirect flows: the host's loopback listener may finish it (poll), or the user pastes the code.
    this.#ui.showProgress('Waiting for the login to complete in the browser, or paste the code…')
    const branch = new AbortController()
    const stop = () => branch.abort()
    signal.addEventListener('abort', stop, { once: true })
    try {
      const polled = this.#poll(started.session_id, started.pollIntervalMs, branch.signal)
      const pasted = promptForCode({ signal: branch.signal }).then(
        async (code) => {
          if (branch.signal.aborted) throw abortError()
          branch.abort() // stop polling: the exchange consumes the session
          return this.#client.request('oauth_exchange', { session_id: started.session_id, code: code.trim() }, { signal })
        },
        (error: unknown) => {
          // A prompt that cannot ask (no terminal) leaves the login to the host: keep polling.
          throw new SoftFailure(error)
        },
      )
      return await firstSettled(polled, pasted, (error) => error instanceof SoftFailure || (branch.signal.aborted && isCancelled(error)))
    } finally {
      signal.removeEventListener('abort', stop)
      branch.abort()
    }
  }

  /** oauth_poll until complete; waits between polls, slower after slow_down; never hot-loops. */
  async #poll(sessionId: string, initialIntervalMs: number, signal: AbortSignal): Promise<OAuthToken> {
    let intervalMs = Math.max(MIN_POLL_INTERVAL_MS, initialIntervalMs)
    for (;;) {
      await sleep(intervalMs, signal)
      let answer: OpData<'oauth_poll'>
      try {
        answer = await this.#client.request('oauth_poll', { session_id: sessionId }, { signal })
      } catch (error) {
        // The host asks us to back off: wait as told, then keep polling.
        if (error instanceof ProxyError && error.code === 'RATE_LIMITED') {
          await sleep(Math.max(intervalMs, (error.retryAfter ?? 1) * 1000), signal)
          continue
        }
        throw error
      }
      if (answer.status === 'complete') return answer.token
      // `interval` is in seconds (RFC 8628 slow_down); it only ever slows us down.
      if (answer.interval !== undefined && answer.interval * 1000 > intervalMs) {
        intervalMs = answer.interval * 1000
        this.#ui.showProgress(`The server asked to slow down; checking every ${answer.interval} s…`)
      }
    }
  }

  async #cancelSession(sessionId: string): Promise<void> {
    try {
      await this.#client.request('oauth_cancel', { session_id: sessionId }, { timeoutMs: OAUTH_CANCEL_TIMEOUT_MS })
    } catch {
      // Best effort: the host expires abandoned sessions on its own.
    }
  }
}

function verificationInfo(provider: string, bucket: string | undefined, started: OpData<'oauth_initiate'>): VerificationInfo {
  const info: VerificationInfo = { provider, bucket, flowType: started.flow_type }
  if (started.auth_url !== undefined) info.authUrl = started.auth_url
  if (started.verification_uri !== undefined) info.verificationUri = started.verification_uri
  if (started.user_code !== undefined) info.userCode = started.user_code
  if (started.verification_uri_complete !== undefined) info.verificationUriComplete = started.verification_uri_complete
  return info
}

function abortError(): ProxyError {
  return new ProxyError('CANCELLED', 'login was cancelled')
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(abortError())
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer)
      reject(abortError())
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

class SoftFailure extends Error {
  constructor(cause: unknown) {
    super('prompt failed', { cause })
  }
}

function isCancelled(error: unknown): boolean {
  return error instanceof ProxyError && error.code === 'CANCELLED'
}

/**
 * The first branch to succeed wins. A hard failure (e.g. EXCHANGE_FAILED, ACCESS_DENIED)
 * ends the login at once; a soft one (aborted loser, failed prompt) only when both failed.
 */
function firstSettled<T>(a: Promise<T>, b: Promise<T>, isSoft: (error: unknown) => boolean): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let softFailures = 0
    let firstSoft: unknown
    const onFail = (error: unknown) => {
      if (!isSoft(error)) {
        reject(error)
        return
      }
      firstSoft ??= error
      if (++softFailures === 2) reject(firstSoft instanceof SoftFailure ? firstSoft.cause : firstSoft)
    }
    a.then(resolve, onFail)
    b.then(resolve, onFail)
  })
}
