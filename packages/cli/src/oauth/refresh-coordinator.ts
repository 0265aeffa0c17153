// One refresh per provider+bucket at a time: a shared promise in this process, the
// store's refresh lock across processes, and a re-read after the lock (another
// process may have refreshed already). A rotated refresh token is never sent twice:
// sending it again would make the server revoke the whole grant. So a refreshed token
// the store fails to save is kept in memory, served, and its write retried.
import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { backoffDelay, DEFAULT_BUCKET, mergeRefreshedToken, ProxyError, secondsUntilExpiry, type OAuthToken } from '@credproxy/core'
import type { HeldLock } from '../storage/locks.js'
import type { HostTokenStore } from '../storage/types.js'
import { classifyOAuthError, describeFailure } from './classify-error.js'
import { exposedError, reauthRequired } from './errors.js'
import { withRefreshLock } from './refresh-lock.js'
import { escapeUntrusted } from '../escape.js'
import { REFRESH_MARGIN_SECONDS } from './refresh-margin.js'

/** After a successful refresh, a second one within this window returns the stored token (ms). */
export const REFRESH_COOLDOWN_MS = 30_000
/** A failed refresh is remembered this long; callers get the still-valid token or the same error (ms). */
export const REFRESH_NEGATIVE_CACHE_MS = 15_000
/** Attempts per refresh when the server answers 5xx or the network fails. */
export const REFRESH_MAX_ATTEMPTS = 3
export const REFRESH_BACKOFF_BASE_MS = 250
/**
 * How long a coordinated refresh waits for another process's refresh (ms): longer than
 * the store's default REFRESH_LOCK_WAIT_MS, since it must outlast one refresh with all its retries.
 */
export const COORDINATED_REFRESH_LOCK_WAIT_MS = 60_000
/** A token with less than this left is not "still valid" for fallbacks (seconds). */
export const MIN_USABLE_VALIDITY_SECONDS = 10
export { REFRESH_MARGIN_SECONDS }
/** How long close() waits for the last write of unsaved tokens (ms): a stop must not hang on a held lock. */
export const CLOSE_FLUSH_TIMEOUT_MS = 5_000

export interface RefreshOptions {
  /** Refresh even when the token is not near expiry (a client saw a 401). */
  force?: boolean
  /** Refresh when less than this is left (seconds); default REFRESH_MARGIN_SECONDS. */
  marginSeconds?: number
}

export type RefreshGrant = (provider: string, refreshToken: string) => Promise<OAuthToken>

export interface RefreshCoordinatorOptions {
  tokens: HostTokenStore
  /** The refresh_token grant towards the provider's server. */
  grant: RefreshGrant
  now?: () => number
  sleep?: (ms: number) => Promise<void>
  cooldownMs?: number
  negativeCacheMs?: number
  maxAttempts?: number
  backoffBaseMs?: number
  lockWaitMs?: number
  log?: (line: string) => void
}

interface FailureRecord {
  at: number
  error: ProxyError
  /** Which refresh token failed; a new login (new refresh token) clears the record. */
  fingerprint: string
}

/** A refreshed token the store failed to save: served from memory until a write succeeds. */
interface UnsavedToken {
  token: OAuthToken
  /** The refresh token the store still holds, spent to get `token`: never sent again. */
  storedRefreshToken: string
  failedWrites: number
}

function fingerprint(refreshToken: string | undefined): string {
  return refreshToken === undefined ? '' : createHash('sha256').update(refreshToken).digest('base64url')
}

function loginCommand(provider: string, bucket: string): string {
  return `credproxy auth login ${provider}${bucket === DEFAULT_BUCKET ? '' : ` --bucket ${bucket}`}`
}

export function isUsable(token: OAuthToken, nowMs: number): boolean {
  return secondsUntilExpiry(token, nowMs) > MIN_USABLE_VALIDITY_SECONDS
}

export class RefreshCoordinator {
  private readonly inFlight = new Map<string, Promise<OAuthToken>>()
  private readonly lastSuccess = new Map<string, number>()
  private readonly failures = new Map<string, FailureRecord>()
  private readonly unsaved = new Map<string, UnsavedToken>()
  private readonly now: () => number
  private readonly sleep: (ms: number) => Promise<void>
  private readonly log: (line: string) => void

  constructor(private readonly options: RefreshCoordinatorOptions) {
    this.now = options.now ?? Date.now
    this.sleep = options.sleep ?? ((ms) => sleep(ms))
    this.log = options.log ?? (() => undefined)
  }

  /**
   * Refresh provider/bucket unless someone just did. Concurrent callers share one refresh.
   * Errors: NOT_FOUND, REFRESH_NOT_AVAILABLE, REAUTH_REQUIRED, REFRESH_FAILED, RATE_LIMITED.
   */
  refresh(provider: string, bucket: string, options: RefreshOptions = {}): Promise<OAuthToken> {
    const key = `${provider}\u0000${bucket}`
    const running = this.inFlight.get(key)
    if (running !== undefined) return running
    const started = this.run(key, provider, bucket, options).finally(() => this.inFlight.delete(key))
    this.inFlight.set(key, started)
    return started
  }

  /** The refreshed token held in memory because saving it failed; refresh() retries the write. */
  unsavedToken(provider: string, bucket: string): OAuthToken | undefined {
    return this.unsaved.get(`${provider}\u0000${bucket}`)?.token
  }

  /**
   * On close: one last write of every unsaved token, bounded by timeoutMs, since that token
   * (and the rotated refresh token in it) dies with this process. Never throws; logs the outcome.
   */
  async flushUnsaved(timeoutMs = CLOSE_FLUSH_TIMEOUT_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs
    // A refresh still running may yet leave an unsaved token behind: let it settle first.
    await this.within([...this.inFlight.values()].map((p) => p.catch(() => undefined)), timeoutMs)
    await Promise.all(
      [...this.unsaved.entries()].map(async ([key, unsaved]) => {
        const [provider = '', bucket = DEFAULT_BUCKET] = key.split('\u0000')
        try {
          const saved = await this.within(
            [
              this.options.tokens.updateToken(provider, bucket, (latest) =>
                latest !== null && latest.refresh_token === unsaved.storedRefreshToken ? unsaved.token : latest,
              ),
            ],
            Math.max(0, deadline - Date.now()),
          )
          if (saved === undefined) throw new Error(`timed out after ${timeoutMs} ms`)
          this.unsaved.delete(key)
          // A newer credential (a new login, a logout) won: nothing of ours is lost.
          if (saved?.access_token !== unsaved.token.access_token) return
          this.log(`oauth ${provider}/${bucket}: the refreshed token is saved now, on shutdown (after ${unsaved.failedWrites} failed write${unsaved.failedWrites === 1 ? '' : 's'})`)
        } catch (error) {
          this.log(
            `oauth ${provider}/${bucket}: ERROR: the refreshed token could not be saved before the broker stopped (${(error as Error).message}); ` +
              `it is lost and the stored refresh token is already spent: run \`${loginCommand(provider, bucket)}\` on the host`,
          )
        }
      }),
    )
  }

  /** The first result, or undefined when ms pass first (the promise keeps running). */
  private async within<T>(promises: Promise<T>[], ms: number): Promise<T | undefined> {
    if (promises.length === 0) return undefined
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms)
    })
    try {
      return await Promise.race([Promise.all(promises).then((all) => all[0]), timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  /** A forced refresh (a client saw a 401) ignores the margin; cooldown and re-read still apply. */
  needsRefresh(token: OAuthToken, options: RefreshOptions): boolean {
    return options.force === true || secondsUntilExpiry(token, this.now()) <= (options.marginSeconds ?? REFRESH_MARGIN_SECONDS)
  }

  private async run(key: string, provider: string, bucket: string, force: RefreshOptions): Promise<OAuthToken> {
    let before = await this.options.tokens.getToken(provider, bucket)
    if (before === null) {
      this.unsaved.delete(key)
      throw exposedError('NOT_FOUND', `no token for ${provider}/${bucket} is stored on the host`)
    }
    before = await this.retryUnsaved(key, provider, bucket, before)
    if (!this.needsRefresh(before, force)) return before
    const now = this.now()

    const failure = this.failures.get(key)
    if (failure !== undefined && now - failure.at < (this.options.negativeCacheMs ?? REFRESH_NEGATIVE_CACHE_MS)) {
      if (failure.fingerprint === fingerprint(before.refresh_token)) {
        if (isUsable(before, now)) return before
        throw failure.error
      }
    }
    const last = this.lastSuccess.get(key)
    const cooldownMs = this.options.cooldownMs ?? REFRESH_COOLDOWN_MS
    if (last !== undefined && now - last < cooldownMs) {
      if (isUsable(before, now)) return before
      const retryAfter = Math.max(1, Math.ceil((cooldownMs - (now - last)) / 1000))
      throw new ProxyError('RATE_LIMITED', undefined, { retryAfter })
    }

    try {
      const token = await withRefreshLock(this.options.tokens, provider, bucket, (lock) => this.refreshLocked(lock, key, provider, bucket, before, force), {
        waitMs: this.options.lockWaitMs ?? COORDINATED_REFRESH_LOCK_WAIT_MS,
        log: this.log,
      })
      this.failures.delete(key)
      return token
    } catch (error) {
      const proxyError = error instanceof ProxyError ? error : new ProxyError('REFRESH_FAILED', undefined, { cause: error })
      if (!(error instanceof ProxyError)) this.log(`oauth ${provider}/${bucket}: refresh failed: ${escapeUntrusted((error as Error).message)}`)
      if (proxyError.code === 'REAUTH_REQUIRED' || proxyError.code === 'REFRESH_FAILED') {
        this.failures.set(key, { at: this.now(), error: proxyError, fingerprint: fingerprint(before.refresh_token) })
      }
      throw proxyError
    }
  }

  private async refreshLocked(
    lock: HeldLock,
    key: string,
    provider: string,
    bucket: string,
    before: OAuthToken,
    force: RefreshOptions,
  ): Promise<OAuthToken> {
    // Re-read under the lock: another process may have refreshed (and rotated) already.
    const stored = await this.options.tokens.getToken(provider, bucket)
    if (stored === null) throw exposedError('NOT_FOUND', `no token for ${provider}/${bucket} is stored on the host`)
    // While the store still holds the refresh token we spent, the unsaved token is the current one.
    const unsaved = this.unsaved.get(key)
    const current = unsaved !== undefined && stored.refresh_token === unsaved.storedRefreshToken ? unsaved.token : stored
    const changed = current.access_token !== before.access_token
    if ((changed && isUsable(current, this.now())) || !this.needsRefresh(current, force)) {
      this.lastSuccess.set(key, this.now())
      return current
    }
    const refreshToken = current.refresh_token
    if (refreshToken === undefined) {
      if (isUsable(current, this.now())) return current
      throw exposedError(
        'REFRESH_NOT_AVAILABLE',
        `no refresh token is stored for ${provider}/${bucket}; run \`credproxy auth login ${provider}\` on the host`,
      )
    }
    // What the store must still hold for refreshToken to be unspent: itself, or (unsaved) the token it replaced.
    const expectedStored = current === stored ? refreshToken : stored.refresh_token
    const outcome = await this.grantWithRetry(provider, bucket, refreshToken, async () => {
      // Immediately before each request: the lock is still ours and nobody rotated the token meanwhile.
      await lock.assertHeld('REFRESH_FAILED')
      const latest = await this.options.tokens.getToken(provider, bucket)
      if (latest === null) throw exposedError('NOT_FOUND', `no token for ${provider}/${bucket} is stored on the host`)
      return latest.refresh_token === expectedStored ? null : latest
    })
    if (outcome.kind === 'superseded') {
      this.log(`oauth ${provider}/${bucket}: the stored refresh token changed under the lock; the refresh was not sent`)
      this.unsaved.delete(key)
      return outcome.token
    }
    const fresh = outcome.token
    this.lastSuccess.set(key, this.now())
    let saved: OAuthToken | null
    try {
      // Atomic read-modify-write: a response without refresh_token keeps the current one.
      saved = await this.options.tokens.updateToken(provider, bucket, (latest) => mergeRefreshedToken(current === stored ? latest : current, fresh))
    } catch (error) {
      // The server has rotated the refresh token already: dropping `fresh` now would force a new login.
      const token = mergeRefreshedToken(current, fresh)
      const failedWrites = (unsaved?.failedWrites ?? 0) + 1
      this.unsaved.set(key, { token, storedRefreshToken: stored.refresh_token ?? '', failedWrites })
      this.logUnsaved(provider, bucket, error, failedWrites)
      return token
    }
    this.unsaved.delete(key)
    return saved ?? mergeRefreshedToken(current, fresh)
  }

  /** One write attempt for an unsaved token; returns the token to go on with. */
  private async retryUnsaved(key: string, provider: string, bucket: string, stored: OAuthToken): Promise<OAuthToken> {
    const unsaved = this.unsaved.get(key)
    if (unsaved === undefined) return stored
    if (stored.refresh_token !== unsaved.storedRefreshToken) {
      // A newer credential (a new login) was written meanwhile: it wins.
      this.unsaved.delete(key)
      return stored
    }
    try {
      const saved = await this.options.tokens.updateToken(provider, bucket, (latest) =>
        latest !== null && latest.refresh_token === unsaved.storedRefreshToken ? unsaved.token : latest,
      )
      this.unsaved.delete(key)
      if (saved === null) throw exposedError('NOT_FOUND', `no token for ${provider}/${bucket} is stored on the host`)
      if (saved.access_token === unsaved.token.access_token) {
        this.log(`oauth ${provider}/${bucket}: the refreshed token is saved now (after ${unsaved.failedWrites} failed write${unsaved.failedWrites === 1 ? '' : 's'})`)
      }
      return saved
    } catch (error) {
      if (error instanceof ProxyError && error.code === 'NOT_FOUND') throw error
      unsaved.failedWrites += 1
      this.logUnsaved(provider, bucket, error, unsaved.failedWrites)
      return unsaved.token
    }
  }

  private logUnsaved(provider: string, bucket: string, error: unknown, failedWrites: number): void {
    this.log(
      `oauth ${provider}/${bucket}: WARNING: saving the refreshed token failed (${failedWrites}x: ${(error as Error).message}); ` +
        'it is held in memory and the write is retried; if this broker stops before a write succeeds, ' +
        `run \`${loginCommand(provider, bucket)}\` on the host`,
    )
  }

  /** beforeSend returns a token that supersedes ours (then nothing is sent) or null to go ahead; it may throw. */
  private async grantWithRetry(
    provider: string,
    bucket: string,
    refreshToken: string,
    beforeSend: () => Promise<OAuthToken | null>,
  ): Promise<{ kind: 'fresh' | 'superseded'; token: OAuthToken }> {
    const maxAttempts = this.options.maxAttempts ?? REFRESH_MAX_ATTEMPTS
    const base = this.options.backoffBaseMs ?? REFRESH_BACKOFF_BASE_MS
    for (let attempt = 1; ; attempt += 1) {
      const superseded = await beforeSend()
      if (superseded !== null) return { kind: 'superseded', token: superseded }
      try {
        return { kind: 'fresh', token: await this.options.grant(provider, refreshToken) }
      } catch (error) {
        if (error instanceof ProxyError) throw error
        const failure = classifyOAuthError(error)
        this.log(`oauth ${provider}/${bucket}: refresh attempt ${attempt} failed: ${describeFailure(failure)}`)
        if (failure.kind === 'invalid_grant') throw reauthRequired(provider, bucket, error)
        if (failure.kind !== 'transient' || attempt >= maxAttempts) {
          throw new ProxyError('REFRESH_FAILED', undefined, { cause: error })
        }
        // Equal jitter (backoffDelay), so several hosts do not retry in step.
        await this.sleep(backoffDelay(attempt - 1, { baseMs: base }))
      }
    }
  }
}
