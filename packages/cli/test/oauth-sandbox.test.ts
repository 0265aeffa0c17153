// Must-show end to end: logins started from sandboxed child processes (built core
// client + ProxyOAuthAdapter) through a real CredentialProxyServer and the host
// OAuth broker, approved at a real oidc-provider; the stampede over 4 processes.
// Needs `npm run build` first (the children run packages/core/dist).
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import type { OAuthToken } from '@credproxy/core'
import { createOAuthBroker, type HostOAuth } from '../src/credentials/host-oauth.js'
import { CredentialProxyServer, type StartedServer } from '../src/broker/credential-proxy-server.js'
import { startAuthServer, type AuthServer } from './helpers/auth-server.js'
import { deviceLogin } from './helpers/oauth-login.js'
import { createOAuthTestEnv, type OAuthTestEnv } from './helpers/oauth-env.js'
import { runChild, startRecordingRelay, waitForLine, type ChildRun, type Relay } from './helpers/oauth-sandbox.js'
import { tokenSubject } from '../src/oauth/account.js'

const P = 'testprov'

describe('OAuth from inside a sandbox (child processes over the real socket)', () => {
  let as: AuthServer
  let t: OAuthTestEnv
  let broker: HostOAuth
  let server: CredentialProxyServer
  let started: StartedServer
  let relay: Relay
  let runDir: string

  beforeAll(async () => {
    as = await startAuthServer({ accessTokenTtlSeconds: 60 })
    t = await createOAuthTestEnv(as)
    const created = await createOAuthBroker({ stores: t.stores, env: t.env })
    if (created === null) throw new Error('no providers.json')
    broker = created
    runDir = await mkdtemp(join(tmpdir(), 'cp-oauth-run-'))
    server = new CredentialProxyServer({
      stores: t.stores,
      oauth: broker.logins,
      credentials: broker.credentials,
      runtimeDir: runDir,
      grants: { providers: [{ provider: P }], keys: [], capabilities: ['read', 'login'] },
      limits: { rateLimitPerSecond: 10_000, rateLimitBurst: 10_000 },
    })
    started = await server.start()
    relay = await startRecordingRelay(started.socketPath, runDir)
  })
  afterAll(async () => {
    await relay.close()
    await server.stop()
    await broker.close()
    await as.close()
    await t.cleanup()
    await rm(runDir, { recursive: true, force: true })
  })

  test('device-flow login from the sandbox: stored on the host, the child gets no refresh token', async () => {
    const child = runChild(relay.socketPath, started.secret, ['login', P, 'device'])
    const { verification } = (await waitForLine(child, 'verification')) as { verification: { flowType: string; userCode: string } }
    expect(verification.flowType).toBe('device_code')
    await as.approveDevice(verification.userCode)
    const { token } = (await waitForLine(child, 'token')) as { token: OAuthToken }
    expect(await child.exited).toBe(0)
    const stored = await t.stores.tokens.getToken(P, 'device')
    expect(stored?.access_token).toBe(token.access_token)
    expect(stored?.refresh_token).toMatch(/\S/)
    expect(token.refresh_token).toBeUndefined()
    expect(relay.received()).not.toContain(stored?.refresh_token ?? '<none>')
    expect(relay.received()).not.toContain('refresh_token')
  })

  test('stampede: 200 get_token calls from 4 processes on an expired token make exactly 1 refresh', async () => {
    await deviceLogin(broker, as, P, 'stampede')
    const old = await t.stores.tokens.updateToken(P, 'stampede', (c) => (c === null ? null : { ...c, expiry: Math.floor(Date.now() / 1000) - 5 }))
    const before = as.refreshRequests
    const children = Array.from({ length: 4 }, () => runChild(relay.socketPath, started.secret, ['get', P, 'stampede', '50']))
    const results = await Promise.all(children.map((c) => waitForLine(c, 'tokens')))
    expect(await Promise.all(children.map((c) => c.exited))).toEqual([0, 0, 0, 0])
    expect(as.refreshRequests - before).toBe(1)
    const tokens = results.flatMap((r) => r['tokens'] as OAuthToken[])
    expect(tokens).toHaveLength(200)
    const stored = await t.stores.tokens.getToken(P, 'stampede')
    for (const token of tokens) {
      expect(token.access_token).toBe(stored?.access_token)
      expect(token.access_token).not.toBe(old?.access_token)
      expect(token.expiry).toBeGreaterThan(Date.now() / 1000)
      expect(token.refresh_token).toBeUndefined()
    }
    expect(relay.received()).not.toContain(stored?.refresh_token ?? '<none>')
  })

  test('a revoked grant reaches the sandbox as REAUTH_REQUIRED naming `credproxy auth login <provider>`', async () => {
    const token = await deviceLogin(broker, as, P, 'default')
    await as.revokeGrant(token.refresh_token ?? '')
    await t.stores.tokens.updateToken(P, 'default', (c) => (c === null ? null : { ...c, expiry: Math.floor(Date.now() / 1000) - 5 }))
    const child = runChild(relay.socketPath, started.secret, ['get', P, 'default', '1'])
    expect(await child.exited).toBe(1)
    const { error } = child.lines.find((l) => 'error' in l) as { error: { code: string; message: string } }
    expect(error.code).toBe('REAUTH_REQUIRED')
    expect(error.message).toContain('credproxy auth login testprov')
  })

  describe('a login from the sandbox never replaces another account\'s stored token without --allow-save', () => {
    const B = 'victim'
    const subject = async (): Promise<string | undefined> => tokenSubject((await t.stores.tokens.getToken(P, B)) as OAuthToken)

    /** A device login from the sandbox child, approved at the authorization server as `account`. */
    async function sandboxLogin(account: string): Promise<ChildRun> {
      const child = runChild(relay.socketPath, started.secret, ['login', P, B])
      const { verification } = (await waitForLine(child, 'verification')) as { verification: { userCode: string } }
      await as.approveDevice(verification.userCode, account)
      await child.exited
      return child
    }

    beforeAll(async () => {
      await deviceLogin(broker, as, P, B) // the host user's own login, as test-user
    })

    test('approved by another account: refused naming --allow-save, the host token and its refresh token untouched', async () => {
      const before = await t.stores.tokens.getToken(P, B)
      expect(tokenSubject(before as OAuthToken)).toBe('test-user')
      const child = await sandboxLogin('attacker')
      const { error } = child.lines.find((l) => 'error' in l) as { error: { code: string; message: string } }
      expect(error.code).toBe('NOT_GRANTED')
      expect(error.message).toContain('another account')
      expect(error.message).toContain('--allow-save')
      const after = await t.stores.tokens.getToken(P, B)
      expect(after?.refresh_token).toBe(before?.refresh_token)
      expect(after?.access_token).toBe(before?.access_token)
    })

    test('approved by the same account: the stored token is renewed', async () => {
      const before = await t.stores.tokens.getToken(P, B)
      const child = await sandboxLogin('test-user')
      const { token } = child.lines.find((l) => 'token' in l) as { token: OAuthToken }
      const after = await t.stores.tokens.getToken(P, B)
      expect(after?.access_token).toBe(token.access_token)
      expect(after?.access_token).not.toBe(before?.access_token)
      expect(await subject()).toBe('test-user')
    })

    test('with the save capability (--allow-save), another account may replace it', async () => {
      server.grants.grant({ capabilities: ['save'] })
      try {
        const child = await sandboxLogin('second-account')
        expect(child.lines.some((l) => 'token' in l)).toBe(true)
        expect(await subject()).toBe('second-account')
      } finally {
        server.grants.revoke({ capabilities: ['save'] })
      }
    })
  })

  // Last: it swaps in a broker whose first flow is pkce (the host picks the flow, not the client).
  test('PKCE login from the sandbox: the host loopback listener completes it', async () => {
    const pkceFirst = await createOAuthBroker({
      stores: t.stores,
      env: t.env,
      providers: { file: t.providersFile, providers: new Map([[P, { ...broker.logins.provider(P), flows: ['pkce', 'device_code'] }]]) },
    })
    if (pkceFirst === null) throw new Error('no providers')
    await server.stop()
    server = new CredentialProxyServer({
      stores: t.stores,
      oauth: pkceFirst.logins,
      credentials: pkceFirst.credentials,
      runtimeDir: runDir,
      grants: { providers: [{ provider: P }], keys: [], capabilities: ['read', 'login'] },
    })
    started = await server.start()
    await relay.close()
    relay = await startRecordingRelay(started.socketPath, runDir)
    try {
      const child = runChild(relay.socketPath, started.secret, ['login', P, 'pkce'])
      const { verification } = (await waitForLine(child, 'verification')) as { verification: { flowType: string; authUrl: string } }
      expect(verification.flowType).toBe('pkce_redirect')
      const redirect = await as.completeAuthorization(verification.authUrl)
      expect((await fetch(redirect)).status).toBe(200) // the browser reaches the host's loopback listener
      const { token } = (await waitForLine(child, 'token')) as { token: OAuthToken }
      expect(await child.exited).toBe(0)
      const stored = await t.stores.tokens.getToken(P, 'pkce')
      expect(stored?.access_token).toBe(token.access_token)
      expect(stored?.refresh_token).toMatch(/\S/)
      expect(relay.received()).not.toContain(stored?.refresh_token ?? '<none>')
      expect(relay.received()).not.toContain('refresh_token')
      expect(relay.received()).not.toContain('code_verifier')
    } finally {
      await pkceFirst.close()
    }
  })
})
