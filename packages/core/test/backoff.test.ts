import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { backoffDelay, backoffStep } from '../src/index.js'

describe('backoffDelay: exponential, capped, equal jitter', () => {
  test('the step doubles from baseMs and stops at maxMs', () => {
    expect([0, 1, 2, 3, 4, 5].map((n) => backoffStep(n, { baseMs: 2, maxMs: 50 }))).toEqual([2, 4, 8, 16, 32, 50])
  })

  test('equal jitter: random 0 waits half the step, random near 1 the whole step', () => {
    expect(backoffDelay(2, { baseMs: 100, random: () => 0 })).toBe(200)
    expect(backoffDelay(2, { baseMs: 100, random: () => 0.999999 })).toBe(400)
    expect(backoffDelay(2, { baseMs: 100, random: () => 0.5 })).toBe(300)
  })

  test('jitter: false is exactly the step', () => {
    expect(backoffDelay(3, { baseMs: 1_000, maxMs: 5_000, jitter: false })).toBe(5_000)
    expect(backoffDelay(0, { baseMs: 250, jitter: false })).toBe(250)
  })

  test('any attempt and any random value: the delay lies in [step/2, step] (whole ms)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 40 }),
        fc.integer({ min: 1, max: 10_000 }),
        fc.integer({ min: 1, max: 120_000 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (attempt, baseMs, maxMs, r) => {
          const step = backoffStep(attempt, { baseMs, maxMs })
          const delay = backoffDelay(attempt, { baseMs, maxMs, random: () => r })
          expect(Number.isInteger(delay)).toBe(true)
          expect(delay).toBeGreaterThanOrEqual(Math.floor(step / 2))
          expect(delay).toBeLessThanOrEqual(Math.ceil(step))
        },
      ),
    )
  })
})
