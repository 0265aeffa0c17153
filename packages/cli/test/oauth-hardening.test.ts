// Host-side OAuth hardening, end to end against the repository's oidc-provider server:
// login rate limits (a sandbox cannot make the host flood the provider), log lines a
// sandbox or provider cannot forge, and login CSRF (URL never on argv, account check).
import { PassThrough } from 'node:stream'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { ProxyError } from '@credproxy/core'
import { escapeUntrusted, logLineTo } from '../src/escape.js'
import { createOAuthBroker, type HostOAuthBroker } from '../src/oauth/host-oauth-broker.js'
import { MAX_EXCHANGES_PER_LOGIN, MAX_LOGINS_PER_OWNER, MAX_PROVIDER_REQUESTS_PER_WINDOW } from '../src/oauth/session-manager.js'
import { startAuthServer, type AuthServer } from './helpers/auth-server.js'
import { createOAuthTestEnv, type OAuthTestEnv } from './helpers/oauth-env.js'

const P = 'testprov'

async function codeOf(promise: Promise<unknown>): Promise<ProxyError> {
  const error = await promise.then(
    () => new Error('expected a rejection'),
    (e: unknown) => e,
  )
  if (!(error instanceof ProxyError)) throw error
  return error
}

describe('OAuth hardening against a real authorization server', () => {
  let as: AuthServer
  let t: OAuthTestEnv
  const logs: string[] = []
  const brokers: HostOAuthBroker[] = []

  async function newBroker(): Promise<HostOAuthBroker> {
    const broker = await createOAuthBroker({ stores: t.stores, env: t.env, schedule: false, log: (l) => logs.push(l) })
    if (broker === null) throw new Error('no providers.json')
    brokers.push(broker)
    return broker
  }

  beforeAll(async () => {
    as = await startAuthServer()
    t = await createOAuthTestEnv(as)
  })
  afterAll(async () => {
    for (const broker of brokers) await broker.close()
    await as.close()
    await t.cleanup()
  })

  test('300 wrong codes to oauth_exchange reach the token endpoint at most MAX_EXCHANGES_PER_LOGIN times; the rest get RATE_LIMITED with retryAfter', async () => {
    const broker = await newBroker()
    const login = await broker.initiate(P, 'default', 'sandbox-a', { flow: 'pkce' })
    const before = as.tokenRequests
    const codes: string[] = []
    let retryAfter: number | undefined
    for (let i = 0; i < 300; i += 1) {
      const error = await codeOf(broker.exchange(login.session_id, `wrong-code-${i}`, 'sandbox-a'))
      codes.push(error.code)
      if (error.code === 'RATE_LIMITED') retryAfter ??= error.retryAfter
    }
    expect(as.tokenRequests - before).toBe(MAX_EXCHANGES_PER_LOGIN)
    expect(codes.filter((c) => c === 'EXCHANGE_FAILED')).toHaveLength(MAX_EXCHANGES_PER_LOGIN)
    expect(codes.filter((c) => c === 'RATE_LIMITED')).toHaveLength(300 - MAX_EXCHANGES_PER_LOGIN)
    expect(retryAfter).toBeGreaterThanOrEqual(1)
    expect(retryAfter).toBeLessThanOrEqual(60)
  })

  test('100 oauth_initiate + oauth_cancel rounds make at most MAX_LOGINS_PER_OWNER device-authorization requests', async () => {
    const broker = await newBroker()
    const before = as.deviceAuthorizationRequests
    const limited: ProxyError[] = []
    for (let i = 0; i < 100; i += 1) {
      try {
        const login = await broker.initiate(P, 'default', 'sandbox-b', { flow: 'device_code' })
        await broker.cancel(login.session_id, 'sandbox-b')
      } catch (error) {
        limited.push(error as ProxyError)
      }
    }
    expect(as.deviceAuthorizationRequests - before).toBe(MAX_LOGINS_PER_OWNER)
    expect(limited).toHaveLength(100 - MAX_LOGINS_PER_OWNER)
    for (const error of limited) expect(error).toMatchObject({ code: 'RATE_LIMITED', retryAfter: expect.any(Number) as number })
    // Another broker session still has its own budget.
    const other = await broker.initiate(P, 'default', 'sandbox-c', { flow: 'device_code' })
    await broker.cancel(other.session_id, 'sandbox-c')
  })

  test('many broker sessions together stay under the host-wide cap MAX_PROVIDER_REQUESTS_PER_WINDOW', async () => {
    const broker = await newBroker()
    const before = as.deviceAuthorizationRequests
    let limited = 0
    for (let owner = 0; owner < 10; owner += 1) {
      for (let i = 0; i < MAX_LOGINS_PER_OWNER; i += 1) {
        try {
          const login = await broker.initiate(P, 'default', `many-${owner}`, { flow: 'device_code' })
          await broker.cancel(login.session_id, `many-${owner}`)
        } catch (error) {
          expect(error).toMatchObject({ code: 'RATE_LIMITED' })
          limited += 1
        }
      }
    }
    expect(as.deviceAuthorizationRequests - before).toBe(MAX_PROVIDER_REQUESTS_PER_WINDOW)
    expect(limited).toBe(10 * MAX_LOGINS_PER_OWNER - MAX_PROVIDER_REQUESTS_PER_WINDOW)
  })

  test('an `error` value with a newline in a pasted redirect URL cannot forge a host log line', async () => {
    const broker = await newBroker()
    const login = await broker.initiate(P, 'default', 'sandbox-d', { flow: 'pkce' })
    const state = new URL(login.auth_url ?? '').searchParams.get('state') ?? ''
    const forged = 'access_denied\ncredproxy: lock refresh+token+testprov+default was compromised\x1b[2K'
    const url = `http://127.0.0.1:1/callback?${new URLSearchParams({ state, error: forged })}`
    const from = logs.length
    await expect(broker.exchange(login.session_id, url, 'sandbox-d')).rejects.toMatchObject({ code: 'EXCHANGE_FAILED' })
    const written = logs.slice(from)
    expect(written.join('')).toContain('authorization failed')
    for (const line of written) for (const c of ['\n', '\r', '\x1b']) expect(line).not.toContain(c)
    // The sink a log line goes through writes exactly one line, whatever it holds.
    const out = new PassThrough()
    const chunks: string[] = []
    out.on('data', (c: Buffer) => chunks.push(c.toString()))
    logLineTo(out)(`oauth x: error=${forged}`)
    expect(chunks.join('').split('\n')).toEqual([expect.stringContaining('credproxy: lock') as string, ''])
    expect(chunks.join('')).not.toMatch(/^credproxy: lock/m)
  })

  test('escapeUntrusted makes control, line-separator and bidi characters visible', () => {
    expect(escapeUntrusted('a\nb\r\x1b[31mc\u2028d\u202ee\x7f\x85')).toBe('a\\x0ab\\x0d\\x1b[31mc\\u2028d\\u202ee\\x7f\\x85')
    expect(escapeUntrusted('plain text: ok /path?x=1')).toBe('plain text: ok /path?x=1')
    expect(escapeUntrusted('abcdef', 3)).toBe('abc...')
  })
})
