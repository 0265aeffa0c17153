// Refresh stored tokens before they expire, so get_token rarely waits on the
// network. The wait is cut into short ticks: safe beyond setTimeout's 2^31-1 ms
// limit, and each tick compares the wall clock with what it expected, so a
// machine that slept re-checks at once instead of trusting a stale timer.
import { backoffDelay, ProxyError, secondsUntilExpiry, type OAuthToken } from '@credproxy/core'

/** Refresh at least this long before expiry (seconds)... */
export const MIN_REFRESH_LEAD_SECONDS = 300
/** ...or this share of the lifetime, whichever is larger... */
export const REFRESH_LEAD_FRACTION = 0.1
/** ...but never earlier than halfway through a short lifetime. */
export const MAX_REFRESH_LEAD_FRACTION = 0.5
/** Random spread so many hosts do not refresh in step (seconds, and share of lifetime). */
export const MAX_REFRESH_JITTER_SECONDS = 30
export const REFRESH_JITTER_FRACTION = 0.05
/** Longest single timer; also how late a wake-up from sleep can be noticed (ms). */
export const MAX_TICK_MS = 60_000
/** A tick this much later than planned means the machine slept or the clock jumped (ms). */
export const CLOCK_DRIFT_THRESHOLD_MS = 10_000
/** Retry after a failed proactive refresh: base, doubling, capped (ms). */
export const SCHEDULER_RETRY_BASE_MS = 10_000
export const SCHEDULER_RETRY_MAX_MS = 300_000

export interface SchedulerTimers {
  setTimeout(fn: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

const realTimers: SchedulerTimers = {
  setTimeout(fn, ms) {
    const handle = setTimeout(fn, ms)
    handle.unref()
    return handle
  },
  clearTimeout(handle) {
    clearTimeout(handle as NodeJS.Timeout)
  },
}

export interface ProactiveSchedulerOptions {
  getToken: (provider: string, bucket: string) => Promise<OAuthToken | null>
  /** Refresh when less than marginSeconds is left (RefreshCoordinator.refresh). */
  refresh: (provider: string, bucket: string, marginSeconds: number) => Promise<OAuthToken>
  now?: () => number
  timers?: SchedulerTimers
  random?: () => number
  log?: (line: string) => void
}

/** When to refresh a token with this expiry and lifetime (unix ms). */
export function planRefreshAt(expirySeconds: number, lifetimeSeconds: number, random: number): number {
  const lifetime = Math.max(0, lifetimeSeconds)
  const lead = Math.min(Math.max(MIN_REFRESH_LEAD_SECONDS, REFRESH_LEAD_FRACTION * lifetime), MAX_REFRESH_LEAD_FRACTION * lifetime)
  const jitter = random * Math.min(MAX_REFRESH_JITTER_SECONDS, REFRESH_JITTER_FRACTION * lifetime)
  return Math.round((expirySeconds - lead - jitter) * 1000)
}

interface Watch {
  provider: string
  bucket: string
  dueAt: number
  expiry: number
  timer: unknown
  /** When the current timer should fire, by the wall clock. */
  expectedAt: number
  failures: number
  generation: number
}

export class ProactiveScheduler {
  private readonly watches = new Map<string, Watch>()
  private readonly now: () => number
  private readonly timers: SchedulerTimers
  private readonly random: () => number
  private readonly log: (line: string) => void
  private stopped = false
  private generation = 0

  constructor(private readonly options: ProactiveSchedulerOptions) {
    this.now = options.now ?? Date.now
    this.timers = options.timers ?? realTimers
    this.random = options.random ?? Math.random
    this.log = options.log ?? (() => undefined)
  }

  /** Unix ms of the next planned refresh, for status output and tests. */
  nextRefreshAt(provider: string, bucket: string): number | undefined {
    return this.watches.get(key(provider, bucket))?.dueAt
  }

  /** (Re)read the stored token and plan its refresh. Tokens without a refresh token are not watched. */
  async watch(provider: string, bucket: string, knownLifetimeSeconds?: number): Promise<void> {
    if (this.stopped) return
    const token = await this.options.getToken(provider, bucket)
    this.plan(provider, bucket, token, knownLifetimeSeconds)
  }

  /** Plan from a token the caller already has (after a refresh or login). */
  plan(provider: string, bucket: string, token: OAuthToken | null, knownLifetimeSeconds?: number): void {
    if (this.stopped) return
    this.unwatch(provider, bucket)
    if (token?.refresh_token === undefined) return
    const lifetime = knownLifetimeSeconds ?? secondsUntilExpiry(token, this.now())
    const dueAt = planRefreshAt(token.expiry, lifetime, this.random())
    const watch: Watch = {
      provider,
      bucket,
      dueAt,
      expiry: token.expiry,
      timer: undefined,
      expectedAt: 0,
      failures: 0,
      generation: ++this.generation,
    }
    this.watches.set(key(provider, bucket), watch)
    this.arm(watch)
  }

  unwatch(provider: string, bucket: string): void {
    const watch = this.watches.get(key(provider, bucket))
    if (watch === undefined) return
    this.timers.clearTimeout(watch.timer)
    this.watches.delete(key(provider, bucket))
  }

  /** Fire after the failure backoff instead of at the planned time (a refreshed token not saved yet). */
  retrySoon(provider: string, bucket: string, reason: ProxyError): void {
    const watch = this.watches.get(key(provider, bucket))
    if (watch === undefined || this.stopped) return
    this.timers.clearTimeout(watch.timer)
    this.fail(watch, reason)
  }

  stop(): void {
    this.stopped = true
    for (const watch of this.watches.values()) this.timers.clearTimeout(watch.timer)
    this.watches.clear()
  }

  private arm(watch: Watch): void {
    const delay = Math.min(MAX_TICK_MS, Math.max(0, watch.dueAt - this.now()))
    watch.expectedAt = this.now() + delay
    watch.timer = this.timers.setTimeout(() => this.tick(watch), delay)
  }

  private current(watch: Watch): boolean {
    return !this.stopped && this.watches.get(key(watch.provider, watch.bucket))?.generation === watch.generation
  }

  private tick(watch: Watch): void {
    if (!this.current(watch)) return
    const now = this.now()
    if (now - watch.expectedAt > CLOCK_DRIFT_THRESHOLD_MS) {
      // Slept or the clock jumped: the stored token may have changed meanwhile; start over from it.
      this.log(`oauth ${watch.provider}/${watch.bucket}: clock moved ${Math.round((now - watch.expectedAt) / 1000)} s; re-checking`)
      if (now < watch.dueAt) {
        this.watch(watch.provider, watch.bucket).catch((error: unknown) => this.fail(watch, error))
        return
      }
    }
    if (now < watch.dueAt) {
      this.arm(watch)
      return
    }
    this.fire(watch)
  }

  private fire(watch: Watch): void {
    // Anything with less left than the planned lead needs refreshing; a token another process renewed does not.
    const margin = Math.max(1, watch.expiry - this.now() / 1000 + 1)
    const startedAt = this.now()
    this.options.refresh(watch.provider, watch.bucket, margin).then(
      (token) => {
        if (!this.current(watch)) return
        const lifetime = token.expiry - startedAt / 1000
        this.plan(watch.provider, watch.bucket, token, lifetime)
      },
      (error: unknown) => this.fail(watch, error),
    )
  }

  private fail(watch: Watch, error: unknown): void {
    if (!this.current(watch)) return
    const code = error instanceof ProxyError ? error.code : 'INTERNAL_ERROR'
    if (code === 'REAUTH_REQUIRED' || code === 'NOT_FOUND' || code === 'REFRESH_NOT_AVAILABLE') {
      this.log(`oauth ${watch.provider}/${watch.bucket}: proactive refresh stopped (${code})`)
      this.unwatch(watch.provider, watch.bucket)
      return
    }
    watch.failures += 1
    const retryAfterMs = error instanceof ProxyError && error.retryAfter !== undefined ? error.retryAfter * 1000 : 0
    // No jitter: the planned time is jittered already, and one watch retries alone.
    const backoff = backoffDelay(watch.failures - 1, { baseMs: SCHEDULER_RETRY_BASE_MS, maxMs: SCHEDULER_RETRY_MAX_MS, jitter: false })
    this.log(`oauth ${watch.provider}/${watch.bucket}: proactive refresh failed (${code}); retry ${watch.failures} in ${Math.max(backoff, retryAfterMs)} ms`)
    watch.dueAt = this.now() + Math.max(backoff, retryAfterMs)
    this.arm(watch)
  }
}

function key(provider: string, bucket: string): string {
  return `${provider}\u0000${bucket}`
}
