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
   * Run fn while holding the cross-process refresh lock of provider/bucket.
   * Throws when the lock cannot be had within waitMs; the lock of a process that
   * died is free at once, the lock of a live (even stalled) one never is.
   * fn gets the lock to check it is still held right before acting.
   */
  withRefreshLock<T>(
    provider: string,
    bucket: string,
    fn: (lock: HeldLock) => Promise<T>,
    options?: { waitMs?: number },
  ): Promise<T>
}

export interface HostStores {
  tokens: HostTokenStore
  keys: ProviderKeyStorage
  backend: BackendName
}
