// Host-side OAuth hardening, end to end against the repository's oidc-provider server:
// login rate limits (a sandbox cannot make the host flood the provider), log lines a
// sandbox or provider cannot forge, and login CSRF (URL never on argv, account check).
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { ProxyError, type OAuthToken } from '@credproxy/core'
import { idTokenSubject } from '../src/oauth/account-check.js'
import { createClientConfiguration } from '../src/oauth/oauth-client.js'
import { parseProvidersConfig } from '../src/oauth/provider-config.js'
import { escapeUntrusted, logLineTo } from '../src/escape.js'
import { createOAuthBroker, type HostOAuth } from '../src/credentials/host-oauth.js'
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
  const brokers: HostOAuth[] = []

  async function newBroker(env: NodeJS.ProcessEnv = t.env): Promise<HostOAuth> {
    const broker = await createOAuthBroker({ stores: t.stores, env, schedule: false, log: (l) => logs.push(l) })
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
    const login = await broker.logins.initiate(P, 'default', 'sandbox-a', { flow: 'pkce' })
    const before = as.tokenRequests
    const codes: string[] = []
    let retryAfter: number | undefined
    for (let i = 0; i < 300; i += 1) {
      const error = await codeOf(broker.logins.exchange(login.session_id, `wrong-code-${i}`, 'sandbox-a'))
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
        const login = await broker.logins.initiate(P, 'default', 'sandbox-b', { flow: 'device_code' })
        await broker.logins.cancel(login.session_id, 'sandbox-b')
      } catch (error) {
        limited.push(error as ProxyError)
      }
    }
    expect(as.deviceAuthorizationRequests - before).toBe(MAX_LOGINS_PER_OWNER)
    expect(limited).toHaveLength(100 - MAX_LOGINS_PER_OWNER)
    for (const error of limited) expect(error).toMatchObject({ code: 'RATE_LIMITED', retryAfter: expect.any(Number) as number })
    // Another broker session still has its own budget.
    const other = await broker.logins.initiate(P, 'default', 'sandbox-c', { flow: 'device_code' })
    await broker.logins.cancel(other.session_id, 'sandbox-c')
  })

  test('many broker sessions together stay under the host-wide cap MAX_PROVIDER_REQUESTS_PER_WINDOW', async () => {
    const broker = await newBroker()
    const before = as.deviceAuthorizationRequests
    let limited = 0
    for (let owner = 0; owner < 10; owner += 1) {
      for (let i = 0; i < MAX_LOGINS_PER_OWNER; i += 1) {
        try {
          const login = await broker.logins.initiate(P, 'default', `many-${owner}`, { flow: 'device_code' })
          await broker.logins.cancel(login.session_id, `many-${owner}`)
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
    const login = await broker.logins.initiate(P, 'default', 'sandbox-d', { flow: 'pkce' })
    const state = new URL(login.auth_url ?? '').searchParams.get('state') ?? ''
    const forged = 'access_denied\ncredproxy: lock refresh+token+testprov+default was compromised\x1b[2K'
    const url = `http://127.0.0.1:1/callback?${new URLSearchParams({ state, error: forged })}`
    const from = logs.length
    await expect(broker.logins.exchange(login.session_id, url, 'sandbox-d')).rejects.toMatchObject({ code: 'EXCHANGE_FAILED' })
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

  async function pollUntilDone(broker: HostOAuth, sessionId: string, owner: string): Promise<OAuthToken> {
    for (let i = 0; i < 200; i += 1) {
      const r = await broker.logins.poll(sessionId, owner)
      if (r.status === 'complete') return r.token
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
    throw new Error('login did not complete')
  }

  test('the browser opener never gets the login URL on its command line: it opens a 0600 page that redirects', async () => {
    const bin = join(t.home, 'fake-bin')
    const record = join(t.home, 'opener')
    await mkdir(bin, { recursive: true })
    // A fake xdg-open: records its argv, the page it was given and that page's mode.
    await writeFile(join(bin, 'xdg-open'), `#!/bin/sh\nprintf '%s\\n' "$0" "$@" > "${record}.argv"\ncp "$1" "${record}.page"\nstat -c %a "$1" > "${record}.mode"\n`)
    await chmod(join(bin, 'xdg-open'), 0o755)
    const broker = await newBroker({ ...t.env, PATH: `${bin}:${t.env['PATH'] ?? ''}`, DISPLAY: ':99' })
    const login = await broker.logins.initiate(P, 'opener', 'host-cli', { flow: 'pkce', openBrowser: true })
    const authUrl = new URL(login.auth_url ?? '')
    let argv = ''
    for (let i = 0; i < 200 && argv === ''; i += 1) {
      argv = await readFile(`${record}.mode`, 'utf8').then(() => readFile(`${record}.argv`, 'utf8'), () => '')
      if (argv === '') await new Promise((resolve) => setTimeout(resolve, 25))
    }
    expect(argv).not.toBe('')
    for (const secret of [authUrl.searchParams.get('state') ?? '-', authUrl.searchParams.get('code_challenge') ?? '-', authUrl.origin]) {
      expect(argv).not.toContain(secret)
    }
    expect((await readFile(`${record}.mode`, 'utf8')).trim()).toBe('600')
    const opened = argv.split('\n')[1] ?? ''
    expect((await stat(join(opened, '..'))).mode & 0o777).toBe(0o700)
    // The page leads the browser to the login; following it completes the login.
    const page = await readFile(`${record}.page`, 'utf8')
    const target = (/content="0;url=([^"]+)"/.exec(page)?.[1] ?? '').replace(/&amp;/g, '&')
    expect(target).toBe(authUrl.href)
    const callback = await fetch(await as.completeAuthorization(target))
    expect(callback.status).toBe(200)
    await pollUntilDone(broker, login.session_id, 'host-cli')
  })

  test("a callback completed with another account's code does not replace the stored account", async () => {
    const broker = await newBroker()
    const first = await broker.logins.initiate(P, 'csrf', 'host-cli', { flow: 'pkce' })
    expect((await fetch(await as.completeAuthorization(first.auth_url ?? '', 'alice'))).status).toBe(200)
    const alice = await pollUntilDone(broker, first.session_id, 'host-cli')
    expect(idTokenSubject(await t.stores.tokens.getToken(P, 'csrf'))).toBe('alice')

    // Alice logs in again; another local user who learnt the state logs in as themselves and hits the callback.
    const again = await broker.logins.initiate(P, 'csrf', 'host-cli', { flow: 'pkce' })
    const from = logs.length
    const attack = await fetch(await as.completeAuthorization(again.auth_url ?? '', 'mallory'))
    expect(attack.status).toBe(400)
    expect(await attack.text()).toContain('different account')
    expect((await t.stores.tokens.getToken(P, 'csrf'))?.access_token).toBe(alice.access_token)
    expect(logs.slice(from).join('\n')).toContain('run `credproxy auth logout testprov --bucket csrf` first')
    // A pasted code of the other account is refused the same way.
    const pasted = new URL(await as.completeAuthorization(again.auth_url ?? '', 'mallory')).searchParams.get('code') ?? ''
    await expect(broker.logins.exchange(again.session_id, pasted, 'host-cli')).rejects.toMatchObject({ code: 'EXCHANGE_FAILED' })
    expect(idTokenSubject(await t.stores.tokens.getToken(P, 'csrf'))).toBe('alice')

    // The login stayed open: Alice's own callback still completes it.
    expect((await fetch(await as.completeAuthorization(again.auth_url ?? '', 'alice'))).status).toBe(200)
    const renewed = await pollUntilDone(broker, again.session_id, 'host-cli')
    expect(renewed.access_token).not.toBe(alice.access_token)
    expect(idTokenSubject(await t.stores.tokens.getToken(P, 'csrf'))).toBe('alice')
  })

  test('a huge device-flow interval never becomes a tight poll loop, and expires_in ends the polling', async () => {
    const broker = await newBroker()
    // 2^31 s: in ms far past Node's timer limit, which would fire after 1 ms.
    as.patchJson('POST', '/device/auth', { interval: 2 ** 31 })
    const before = as.tokenEndpointHits
    const slow = await broker.logins.initiate(P, 'huge-interval', 'sandbox-h', { flow: 'device_code' })
    await new Promise((resolve) => setTimeout(resolve, 1_000))
    expect(as.tokenEndpointHits - before).toBe(0)
    await broker.logins.cancel(slow.session_id, 'sandbox-h')

    as.patchJson('POST', '/device/auth', { interval: 2 ** 31, expires_in: 1 })
    const short = await broker.logins.initiate(P, 'short-expiry', 'sandbox-h', { flow: 'device_code' })
    as.patchJson('POST', '/device/auth', null)
    let outcome: unknown
    for (let i = 0; i < 120 && outcome === undefined; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 25))
      outcome = await broker.logins.poll(short.session_id, 'sandbox-h').then(
        (r) => (r.status === 'pending' ? undefined : r),
        (e: unknown) => e,
      )
    }
    expect(outcome).toMatchObject({ code: 'SESSION_EXPIRED' })
    expect(as.tokenEndpointHits - before).toBe(0)
  })

  test('a loopback issuer whose discovery document points an endpoint at plain-http remote host is refused', async () => {
    const config = parseProvidersConfig(JSON.stringify({ providers: { misdirected: as.providerConfig() } }), 'providers.json').providers.get('misdirected')
    if (config === undefined) throw new Error('no config')
    as.patchJson('GET', '/.well-known/openid-configuration', { token_endpoint: 'http://198.51.100.7/token' })
    try {
      await expect(createClientConfiguration(config)).rejects.toThrow(/token_endpoint is plain http to a remote host/)
    } finally {
      as.patchJson('GET', '/.well-known/openid-configuration', null)
    }
    // The same loopback issuer with loopback endpoints is fine.
    await expect(createClientConfiguration(config)).resolves.toBeDefined()
  })
})
