// Host-side storage contract used by the server, the OAuth refresh machinery and
// the commands. Implementations: keyring backend and encrypted-file backend.
import type { OAuthToken, ProviderKeyStorage, TokenStore } from '@credproxy/core'
import type { HeldLock } from './locks.js'

export type BackendName = 'keyring' | 'file'

export interface HostTokenStore extends TokenStore {
  /**
   * Atomic read-modify-write under the credential's cross-process write lock:
   * lock, re-read, call update, write (or remove when it returns null), unlock.
   * Returns what was written.
   */
  updateToken(
    provider: string,
    bucket: string,
    update: (current: OAuthToken | null) => OAuthToken | null | Promise<OAuthToken | null>,
  ): Promise<OAuthToken | null>
  /** Count one use of provider/bucket for get_bucket_stats (requestCount, lastUsed). */
  recordUsage(provider: string, bucket: string): Promise<void>
  /** Write what is still held in memory (usage counts); owners call it when done. The store stays usable. */
  close?(): Promise<void>
  /**
   * The cross-process lock of one credential for `purpose` (the same lock file as
   * acquireRefreshLock / acquireAuthLock), or null when another live process held it for
   * the whole waitMs. The caller releases it. oauth/refresh-lock.ts builds the refresh lock on it.
   */
  lockCredential(purpose: CredentialLockPurpose, provider: string, bucket: string, options: { waitMs: number }): Promise<HeldLock | null>
}

/** What a per-credential lock serialises: a token refresh, or a login. */
export type CredentialLockPurpose = 'refresh' | 'auth'

export interface HostStores {
  tokens: HostTokenStore
  keys: ProviderKeyStorage
  backend: BackendName
}
