// The address guard and the per-rule token bucket.
import { describe, expect, test } from 'vitest'
import { guardedLookup, isBlockedAddress, TokenBucket } from '../src/egress/guards.js'

describe('isBlockedAddress', () => {
  test.each([
    '127.0.0.1',
    '127.1.2.3',
    '10.0.0.1',
    '172.16.5.4',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '::1',
    '::',
    'fe80::1',
    'fd00:ec2::254',
    '::ffff:127.0.0.1',
    '::ffff:169.254.169.254',
    'not-an-ip',
  ])('%s is blocked', (address) => {
    expect(isBlockedAddress(address)).toBe(true)
  })

  test.each(['1.1.1.1', '140.82.112.3', '2606:4700::1111', '::ffff:8.8.8.8'])('%s is allowed', (address) => {
    expect(isBlockedAddress(address)).toBe(false)
  })
})

describe('guardedLookup', () => {
  test('localhost (loopback) is refused with a named error', async () => {
    const error = await new Promise<unknown>((resolve) => guardedLookup('localhost', {}, (err) => resolve(err)))
    expect((error as { code?: string }).code).toBe('EGRESS_BLOCKED_ADDRESS')
  })
})

describe('TokenBucket', () => {
  test('burst, then refusal with the seconds to wait, then refill', () => {
    let now = 0
    const bucket = new TokenBucket(2, 3, () => now)
    expect([bucket.take(), bucket.take(), bucket.take()]).toEqual([0, 0, 0])
    expect(bucket.take()).toBe(1)
    now += 500
    expect(bucket.take()).toBe(0)
    expect(bucket.take()).toBeGreaterThan(0)
  })

  test('a slow rate gives a long Retry-After', () => {
    const bucket = new TokenBucket(0.1, 1, () => 0)
    bucket.take()
    expect(bucket.take()).toBe(10)
  })
})
