// The contract between the socket server and the host OAuth logins. The server owns
// grants, sanitizing and audit; the broker owns login flows and storage of the tokens
// they produce. Reading and refreshing tokens is the credential source's business
// (credentials/credential-source.ts). Every failure is a ProxyError with a registry code.
import type { OAuthToken } from '@credproxy/core'

export type FlowType = 'device_code' | 'pkce_redirect' | 'browser_redirect'

export interface OAuthInitiateResult {
  flow_type: FlowType
  session_id: string
  pollIntervalMs: number
  auth_url?: string
  verification_uri?: string
  user_code?: string
  verification_uri_complete?: string
}

export type OAuthPollResult =
  | { status: 'pending'; interval?: number }
  /** `token` is the full host token; the server sanitizes it before it crosses the socket. */
  | { status: 'complete'; token: OAuthToken }

export interface InitiateOptions {
  /**
   * Asked when the login's token is about to be stored over an existing one of another
   * account (or one whose account is unknown): false refuses with NOT_GRANTED.
   * Omitted (host logins): the new token always replaces the stored one.
   */
  mayReplace?: () => boolean
}

export interface OAuthBroker {
  /** Start a login in the background and return at once with what the user must see. */
  initiate(provider: string, bucket: string, owner: string, options?: InitiateOptions): Promise<OAuthInitiateResult>
  /** Never blocks. Errors: SESSION_NOT_FOUND, SESSION_EXPIRED, ACCESS_DENIED, POLL_FAILED. */
  poll(sessionId: string, owner: string): Promise<OAuthPollResult>
  /** Paste-the-code / redirect completion. */
  exchange(sessionId: string, code: string, owner: string): Promise<OAuthToken>
  cancel(sessionId: string, owner: string): Promise<void>
  /** Stop logins in progress. */
  close(): Promise<void>
}
