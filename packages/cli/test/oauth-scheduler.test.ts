// ProactiveScheduler on a test clock (injected now + timers); the refreshes go to a
// real authorization server through the real coordinator and file store.
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import { createOAuthBroker, type HostOAuth } from '../src/credentials/host-oauth.js'
import { MAX_TICK_MS, planRefreshAt, ProactiveScheduler, type SchedulerTimers } from '../src/oauth/proactive-scheduler.js'
import { startAuthServer, type AuthServer } from './helpers/auth-server.js'
import { deviceLogin } from './helpers/oauth-login.js'
import { createOAuthTestEnv, type OAuthTestEnv } from './helpers/oauth-env.js'

/** A manual clock: timers fire only when the test advances time. */
function testClock(start: number) {
  let now = start
  const timers = new Map<number, { at: number; fn: () => void }>()
  let next = 1
  const api: SchedulerTimers & { now(): number; advance(ms: number): void; jump(ms: number): void; fireNext(): void; pending(): number[] } = {
    now: () => now,
    setTimeout(fn, ms) {
      const id = next++
      timers.set(id, { at: now + ms, fn })
      return id
    },
    clearTimeout(handle) {
      timers.delete(handle as number)
    },
    advance(ms) {
      const end = now + ms
      for (;;) {
        const due = [...timers].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0]
        if (due === undefined) break
        timers.delete(due[0])
        now = Math.max(now, due[1].at)
        due[1].fn()
      }
      now = end
    },
    /** Wall time moves without timers firing (the machine is suspended). */
    jump(ms) {
      now += ms
    },
    /** The earliest timer fires now, late. */
    fireNext() {
      const first = [...timers].sort((a, b) => a[1].at - b[1].at)[0]
      if (first === undefined) return
      timers.delete(first[0])
      first[1].fn()
    },
    pending: () => [...timers.values()].map((t) => t.at - now),
  }
  return api
}

describe('planRefreshAt', () => {
  test('one hour token: 6 minutes (10%) before expiry, minus up to 30 s jitter', () => {
    expect(planRefreshAt(10_000, 3600, 0)).toBe((10_000 - 360) * 1000)
    expect(planRefreshAt(10_000, 3600, 1)).toBe((10_000 - 390) * 1000)
  })
  test('ten minute token: the 5 minute floor applies', () => {
    expect(planRefreshAt(10_000, 600, 0)).toBe((10_000 - 300) * 1000)
  })
  test('60 s token: never earlier than halfway', () => {
    expect(planRefreshAt(10_000, 60, 0)).toBe((10_000 - 30) * 1000)
  })
})

describe('ProactiveScheduler timing', () => {
  const token = (expiry: number) => ({ access_token: 'a', refresh_token: 'r', expiry, token_type: 'Bearer' })

  test('a refresh 30 days away never arms a timer beyond setTimeout range and fires on time', () => {
    const clock = testClock(0)
    const refresh = vi.fn(() => new Promise<never>(() => undefined))
    const scheduler = new ProactiveScheduler({ getToken: () => Promise.resolve(null), refresh, now: clock.now, timers: clock, random: () => 0 })
    const expiry = 31 * 86_400
    scheduler.plan('p', 'b', token(expiry), expiry)
    for (const delay of clock.pending()) expect(delay).toBeLessThanOrEqual(MAX_TICK_MS)
    const due = scheduler.nextRefreshAt('p', 'b') ?? 0
    clock.advance(due - 1)
    expect(refresh).not.toHaveBeenCalled()
    clock.advance(1)
    expect(refresh).toHaveBeenCalledTimes(1)
    scheduler.stop()
    expect(clock.pending()).toEqual([])
  })

  test('after the machine sleeps past the refresh time, the next tick refreshes at once', () => {
    const clock = testClock(0)
    const refresh = vi.fn(() => new Promise<never>(() => undefined))
    const scheduler = new ProactiveScheduler({ getToken: () => Promise.resolve(null), refresh, now: clock.now, timers: clock, random: () => 0 })
    scheduler.plan('p', 'b', token(3600), 3600)
    // Suspended for two hours: wall time jumps; the one pending timer fires late on wake-up.
    clock.jump(2 * 3600 * 1000)
    clock.fireNext()
    expect(refresh).toHaveBeenCalledTimes(1)
    scheduler.stop()
  })
})

describe('ProactiveScheduler against a real authorization server', () => {
  let as: AuthServer
  let t: OAuthTestEnv
  let broker: HostOAuth
  const clock = testClock(Date.now())

  beforeAll(async () => {
    as = await startAuthServer({ accessTokenTtlSeconds: 60 })
    t = await createOAuthTestEnv(as)
    const created = await createOAuthBroker({ stores: t.stores, env: t.env, now: clock.now, timers: clock })
    if (created === null) throw new Error('no providers.json')
    broker = created
  })
  afterAll(async () => {
    await broker.close()
    await as.close()
    await t.cleanup()
  })

  test('a 60-second token is refreshed before it expires, and the next refresh is scheduled', async () => {
    const first = await deviceLogin(broker, as, 'testprov', 'default')
    expect(first.expiry - clock.now() / 1000).toBeLessThanOrEqual(60)
    const due = broker.credentials.scheduler.nextRefreshAt('testprov', 'default') ?? Infinity
    expect(due).toBeLessThan(first.expiry * 1000)
    const before = as.refreshRequests
    clock.advance(due - clock.now())
    await vi.waitFor(async () => {
      const stored = await t.stores.tokens.getToken('testprov', 'default')
      expect(stored?.access_token).not.toBe(first.access_token)
    })
    expect(as.refreshRequests - before).toBe(1)
    expect(clock.now()).toBeLessThan(first.expiry * 1000)
    await vi.waitFor(() => expect(broker.credentials.scheduler.nextRefreshAt('testprov', 'default')).toBeGreaterThan(due))
  })
})
