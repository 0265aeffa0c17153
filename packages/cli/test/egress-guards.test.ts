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

  test.each([
    ['::127.0.0.1', 'IPv4-compatible'],
    ['::7f00:1', 'IPv4-compatible, hex'],
    ['::ffff:0:7f00:1', 'IPv4-translated (SIIT)'],
    ['::ffff:0:169.254.169.254', 'IPv4-translated metadata'],
    ['64:ff9b::7f00:1', 'NAT64 well-known prefix'],
    ['64:ff9b::10.0.0.1', 'NAT64 to a private address'],
    ['64:ff9b:1::1', 'local-use NAT64'],
    ['2002:7f00:1::', '6to4 of loopback'],
    ['2002:a9fe:a9fe::1', '6to4 of the metadata address'],
    ['2001:0:4136:e378:8000:63bf:80ff:fffe', 'Teredo with client 127.0.0.1'],
  ])('%s (%s) is blocked: the IPv4 inside is checked', (address) => {
    expect(isBlockedAddress(address)).toBe(true)
  })

  test.each(['64:ff9b::808:808', '2002:808:808::1', '::ffff:0:808:808', '2001:db8::7f00:1'])('%s (a public IPv4 inside, or none) is allowed', (address) => {
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
