// Cross-process locks (proper-lockfile: an atomic mkdir plus an mtime heartbeat).
// Lock directories live in <stateDir>/locks; see dev-docs/storage.md "Locking".
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ProxyError, type ErrorCode } from '@credproxy/core'
import { ensurePrivateDir } from '../fs-private.js'

/** A lock whose heartbeat is older than this was left by a crashed process and is taken over. */
export const LOCK_STALE_MS = 5_000
/** proper-lockfile refuses a smaller stale age (its heartbeat must run several times within it). */
export const MIN_LOCK_STALE_MS = 2_000
/** How long a credential write waits for its lock before failing. */
export const WRITE_LOCK_WAIT_MS = 30_000
/** Default wait of acquireRefreshLock / acquireAuthLock / withRefreshLock. */
export const REFRESH_LOCK_WAIT_MS = 30_000
/** Backoff between attempts: doubles from the minimum up to the maximum, with jitter. */
export const LOCK_RETRY_MIN_MS = 2
export const LOCK_RETRY_MAX_MS = 50

/** A lock stayed held by another process for the whole wait. Names the lock, never a value. */
export class LockTimeoutError extends ProxyError {
  override name = 'LockTimeoutError'
  constructor(lock: string, waitMs: number, code: ErrorCode = 'INTERNAL_ERROR') {
    super(code, `timed out after ${waitMs} ms waiting for the ${lock} lock`)
  }
}

export type ReleaseLock = () => Promise<void>

export interface LockAttempt {
  waitMs: number
  staleMs?: number
}

/** Lock names are built only from validated names and fixed prefixes, so they are safe file names. */
export class LockDirectory {
  constructor(
    readonly dir: string,
    private readonly log: (line: string) => void,
  ) {}

  static async open(stateDir: string, log: (line: string) => void): Promise<LockDirectory> {
    const dir = join(stateDir, 'locks')
    await ensurePrivateDir(stateDir)
    await ensurePrivateDir(dir)
    return new LockDirectory(dir, log)
  }

  /** The lock, or null when it stayed held by someone else for waitMs. */
  async tryAcquire(name: string, attempt: LockAttempt): Promise<ReleaseLock | null> {
    const path = join(this.dir, `${name}.lock`)
    const stale = Math.max(MIN_LOCK_STALE_MS, attempt.staleMs ?? LOCK_STALE_MS)
    const deadline = Date.now() + Math.max(0, attempt.waitMs)
    let delay = LOCK_RETRY_MIN_MS
    // Loaded on the first lock: a command that only reads takes none.
    const { default: lockfile } = await import('proper-lockfile')
    for (;;) {
      try {
        return await lockfile.lock(path, {
          // The lock directory itself is the lock; no file has to exist for it.
          realpath: false,
          lockfilePath: path,
          stale,
          retries: 0,
          // The default throws from a timer and would crash the broker; a lost
          // heartbeat only means another process may now hold the lock too.
          onCompromised: (error) => this.log(`credproxy: lock ${name} was compromised: ${error.message}`),
        })
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ELOCKED') throw error
      }
      const left = deadline - Date.now()
      if (left <= 0) return null
      await sleep(Math.min(left, delay / 2 + Math.random() * delay))
      delay = Math.min(LOCK_RETRY_MAX_MS, delay * 2)
    }
  }

  /** Run fn under the lock; throw onTimeout() when it cannot be had in time. */
  async withLock<T>(name: string, attempt: LockAttempt, onTimeout: () => Error, fn: () => Promise<T>): Promise<T> {
    const release = await this.tryAcquire(name, attempt)
    if (release === null) throw onTimeout()
    try {
      return await fn()
    } finally {
      await releaseQuietly(release, name, this.log)
    }
  }
}

/** A release that fails (lock taken over as stale) must not hide the result of the work done under it. */
export async function releaseQuietly(release: ReleaseLock, name: string, log: (line: string) => void): Promise<void> {
  try {
    await release()
  } catch (error) {
    log(`credproxy: releasing lock ${name} failed: ${(error as Error).message}`)
  }
}
