// The cross-process refresh lock: one refresh of provider/bucket at a time across every
// credproxy process on the host (dev-docs/oauth.md "Refresh"). The store only lends the
// lock file (HostTokenStore.lockCredential); what it means, how long to wait and which
// code a timeout answers with are refresh's business, kept here.
import { LockTimeoutError, REFRESH_LOCK_WAIT_MS, releaseQuietly, type HeldLock } from '../storage/locks.js'
import type { HostTokenStore } from '../storage/types.js'

export interface RefreshLockOptions {
  /** Default REFRESH_LOCK_WAIT_MS; the coordinator passes COORDINATED_REFRESH_LOCK_WAIT_MS. */
  waitMs?: number
  /** Host log, for a release that fails. */
  log?: (line: string) => void
}

/**
 * Run fn while holding the refresh lock of provider/bucket. Throws LockTimeoutError (code
 * REFRESH_FAILED) when it cannot be had within waitMs; the lock of a process that died is free
 * at once, the lock of a live (even stalled) one never is. fn gets the lock to check it is still
 * held right before acting. It is the same lock as TokenStore.acquireRefreshLock.
 */
export async function withRefreshLock<T>(
  tokens: HostTokenStore,
  provider: string,
  bucket: string,
  fn: (lock: HeldLock) => Promise<T>,
  options: RefreshLockOptions = {},
): Promise<T> {
  const waitMs = options.waitMs ?? REFRESH_LOCK_WAIT_MS
  const lock = await tokens.lockCredential('refresh', provider, bucket, { waitMs })
  if (lock === null) throw new LockTimeoutError(`refresh (${provider}/${bucket})`, waitMs, 'REFRESH_FAILED')
  try {
    return await fn(lock)
  } finally {
    await releaseQuietly(lock.release, `refresh of ${provider}/${bucket}`, options.log ?? (() => {}))
  }
}
