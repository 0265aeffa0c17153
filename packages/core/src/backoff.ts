// The one retry delay rule of credproxy (socket reconnects, rate-limited requests, lock
// waits, OAuth refresh retries, polls): exponential steps, capped, with equal jitter.

export interface BackoffOptions {
  /** The step of the first retry (attempt 0), in ms; each further attempt doubles it. */
  baseMs: number
  /** No step exceeds this (ms). Default: no cap. */
  maxMs?: number
  /**
   * Equal jitter (the default): half of the step is fixed, the other half random, so the
   * delay lies in [step/2, step]. The fixed half keeps a floor under the wait; the random
   * half keeps several waiters (processes, hosts) from retrying in step. false: exactly the
   * step, for a lone poller whose timing tests and logs should be able to predict.
   */
  jitter?: boolean
  /** Uniform in [0, 1); tests pass their own. */
  random?: () => number
}

/** The step of retry `attempt` (0-based): baseMs * 2^attempt, capped at maxMs. */
export function backoffStep(attempt: number, options: Pick<BackoffOptions, 'baseMs' | 'maxMs'>): number {
  return Math.min(options.maxMs ?? Number.POSITIVE_INFINITY, options.baseMs * 2 ** Math.max(0, attempt))
}

/** How long to wait before retry `attempt` (0-based), in whole ms: see BackoffOptions.jitter. */
export function backoffDelay(attempt: number, options: BackoffOptions): number {
  const step = backoffStep(attempt, options)
  if (options.jitter === false) return Math.round(step)
  const half = step / 2
  return Math.round(half + (options.random ?? Math.random)() * half)
}
