// The per-connection token bucket, on an injected clock.
import { describe, expect, test } from 'vitest'
import { TokenBucket } from '../src/broker/rate-limit.js'

describe('TokenBucket', () => {
  test('allows a burst, then refuses with the wait until the next token', () => {
    let now = 0
    const bucket = new TokenBucket(60, 60, () => now)
    for (let i = 0; i < 60; i++) expect(bucket.take()).toEqual({ ok: true })
    expect(bucket.take()).toEqual({ ok: false, retryAfterSeconds: 0.017 })
    now += 17
    expect(bucket.take()).toEqual({ ok: true })
    now += 10_000
    for (let i = 0; i < 60; i++) expect(bucket.take().ok).toBe(true)
    expect(bucket.take().ok).toBe(false)
  })
})
