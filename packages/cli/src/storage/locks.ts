// Cross-process locks: flock(2) on one file per lock in <stateDir>/locks. The kernel
// drops a lock when its holder dies and never while the holder lives, so a stalled
// holder (SIGSTOP, a VM freeze) is never "taken over" by a clock. See dev-docs/storage.md "Locking".
import { constants } from 'node:fs'
import { open, stat, type FileHandle } from 'node:fs/promises'
import { openLibc } from '../libc.js'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { backoffDelay, ProxyError, type ErrorCode } from '@credproxy/core/client'
import { ensurePrivateDir, PRIVATE_FILE_MODE } from '../fs-private.js'
import { CredproxyError } from '../errors.js'

/** How long a credential write waits for its lock before failing. */
export const WRITE_LOCK_WAIT_MS = 30_000
/** Default wait of acquireRefreshLock / acquireAuthLock / withRefreshLock. */
export const REFRESH_LOCK_WAIT_MS = 30_000
/** Backoff between attempts (backoffDelay, equal jitter): the step doubles from the minimum up to the maximum. */
export const LOCK_RETRY_MIN_MS = 2
export const LOCK_RETRY_MAX_MS = 50
/** Lock files end with this; the mkdir-style `.lock` directories of older versions are ignored. */
export const LOCK_FILE_SUFFIX = '.flock'

const LOCK_EX = 2
const LOCK_NB = 4
const EINTR = 4
const EWOULDBLOCK = process.platform === 'darwin' ? 35 : 11

/** A lock stayed held by another process for the whole wait. Names the lock, never a value. */
export class LockTimeoutError extends ProxyError {
  override name = 'LockTimeoutError'
  constructor(lock: string, waitMs: number, code: ErrorCode = 'INTERNAL_ERROR') {
    super(code, `timed out after ${waitMs} ms waiting for the ${lock} lock`)
  }
}

/** The lock file was removed or replaced while held: another process may hold "the same" lock now. */
export class LockLostError extends ProxyError {
  override name = 'LockLostError'
  constructor(lock: string, code: ErrorCode = 'INTERNAL_ERROR') {
    super(code, `the ${lock} lock is no longer held (its file in the locks directory was removed or replaced)`)
  }
}

export type ReleaseLock = () => Promise<void>

/** A lock this process holds. */
export interface HeldLock {
  /** Throws LockLostError unless the lock is still ours: call it right before acting on what it protects. */
  assertHeld(code?: ErrorCode): Promise<void>
  release: ReleaseLock
}

export interface LockAttempt {
  waitMs: number
}

type Flock = (fd: number, operation: number) => number
let flockBinding: { flock: Flock; errno: () => number } | undefined

function loadFlock(): { flock: Flock; errno: () => number } {
  if (flockBinding !== undefined) return flockBinding
  if (process.platform !== 'linux' && process.platform !== 'darwin') {
    throw new CredproxyError('FAILED', `credproxy's cross-process locks need flock(2), which ${process.platform} does not have`, { hint: 'Run credproxy on Linux or macOS.' })
  }
  const libc = openLibc()
  if (libc === null) {
    throw new CredproxyError('FAILED', 'credproxy cannot load its FFI (koffi) to call flock(2)', { hint: 'Reinstall credproxy (npm ci) so the koffi package is present.' })
  }
  const { koffi, lib } = libc
  flockBinding = { flock: lib.func('int flock(int fd, int operation)') as unknown as Flock, errno: () => koffi.errno() }
  return flockBinding
}

/** true: locked; false: someone else holds it. Never blocks (LOCK_NB). */
function tryFlock(fd: number): boolean {
  const { flock, errno } = loadFlock()
  for (;;) {
    if (flock(fd, LOCK_EX | LOCK_NB) === 0) return true
    const code = errno()
    if (code === EWOULDBLOCK) return false
    if (code !== EINTR) throw new Error(`flock failed with errno ${code}`)
  }
}

/** The path still names the file we locked (not removed, not replaced by another file). */
async function stillLinked(handle: FileHandle, path: string): Promise<boolean> {
  const [ours, current] = await Promise.all([handle.stat(), stat(path).catch(() => null)])
  return current !== null && current.ino === ours.ino && current.dev === ours.dev
}

class FlockLock implements HeldLock {
  private released = false
  constructor(
    private readonly handle: FileHandle,
    private readonly path: string,
    private readonly name: string,
  ) {}

  async assertHeld(code: ErrorCode = 'INTERNAL_ERROR'): Promise<void> {
    if (this.released || !(await stillLinked(this.handle, this.path))) throw new LockLostError(this.name, code)
  }

  release = async (): Promise<void> => {
    if (this.released) return
    this.released = true
    // Closing the only descriptor drops the flock. The file stays: unlinking it would let a
    // waiter that opened it already lock an orphaned inode while a newcomer locks a new file.
    await this.handle.close()
  }
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
    // flock (koffi, a native addon) loads on the first lock: a read such as `key get` takes none.
    return new LockDirectory(dir, log)
  }

  /** The lock, or null when it stayed held by someone else (alive) for waitMs. */
  async tryAcquire(name: string, attempt: LockAttempt): Promise<HeldLock | null> {
    const path = join(this.dir, `${name}${LOCK_FILE_SUFFIX}`)
    const deadline = Date.now() + Math.max(0, attempt.waitMs)
    let retry = 0
    for (;;) {
      // O_NOFOLLOW: a symlink planted in the locks directory is refused, not followed.
      const handle = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, PRIVATE_FILE_MODE)
      let lock: HeldLock | null = null
      try {
        // The file may have been replaced between open and flock: a lock on an orphaned inode excludes nobody.
        if (tryFlock(handle.fd) && (await stillLinked(handle, path))) lock = new FlockLock(handle, path, name)
      } finally {
        if (lock === null) await handle.close()
      }
      if (lock !== null) return lock
      const left = deadline - Date.now()
      if (left <= 0) return null
      await sleep(Math.min(left, backoffDelay(retry, { baseMs: LOCK_RETRY_MIN_MS, maxMs: LOCK_RETRY_MAX_MS })))
      retry += 1
    }
  }

  /** Run fn under the lock; throw onTimeout() when it cannot be had in time. */
  async withLock<T>(name: string, attempt: LockAttempt, onTimeout: () => Error, fn: (lock: HeldLock) => Promise<T>): Promise<T> {
    const lock = await this.tryAcquire(name, attempt)
    if (lock === null) throw onTimeout()
    try {
      return await fn(lock)
    } finally {
      await releaseQuietly(lock.release, name, this.log)
    }
  }
}

/** A release that fails must not hide the result of the work done under the lock. */
export async function releaseQuietly(release: ReleaseLock, name: string, log: (line: string) => void): Promise<void> {
  try {
    await release()
  } catch (error) {
    log(`credproxy: releasing lock ${name} failed: ${(error as Error).message}`)
  }
}
