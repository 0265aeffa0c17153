// Per-connection token bucket: `ratePerSecond` sustained, `burst` at once.
// The clock is injectable so tests step time instead of sleeping.

export type Clock = () => number

export type TakeResult = { ok: true } | { ok: false; retryAfterSeconds: number }

const TAKEN: TakeResult = Object.freeze({ ok: true })

export class TokenBucket {
  #tokens: number
  #last: number

  constructor(
    readonly ratePerSecond: number,
    readonly burst: number = ratePerSecond,
    private readonly nowMs: Clock = () => performance.now(),
  ) {
    if (!(ratePerSecond > 0) || !(burst >= 1)) throw new RangeError('rate must be > 0 and burst >= 1')
    this.#tokens = burst
    this.#last = nowMs()
  }

  /** Take one token, or say how long until one is available (seconds, ms precision). */
  take(): TakeResult {
    const now = this.nowMs()
    const elapsedMs = Math.max(0, now - this.#last)
    this.#last = now
    this.#tokens = Math.min(this.burst, this.#tokens + (elapsedMs * this.ratePerSecond) / 1000)
    if (this.#tokens >= 1) {
      this.#tokens -= 1
      return TAKEN
    }
    const waitMs = ((1 - this.#tokens) * 1000) / this.ratePerSecond
    return { ok: false, retryAfterSeconds: Math.max(0.001, Math.ceil(waitMs) / 1000) }
  }
}
