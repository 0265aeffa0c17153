// Must show: over a session doing a device login, get_token, save_token and
// refresh_token against a real authorization server, no refresh token, client secret,
// PKCE verifier, device code or session secret appears in any byte sent to the
// client, and the audit file holds none of them (nor any access token).
import { HOST_ONLY_TOKEN_FIELDS, type OAuthToken } from '@credproxy/core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { createOAuthBroker } from '../src/credentials/host-oauth.js'
import { startAuthServer, type AuthServer } from './helpers/auth-server.js'
import { startSecureSession, type SecureSession } from './helpers/security-helpers.js'
import type { RawClient } from './helpers/server-raw-client.js'

const PLANTED: OAuthToken = {
  access_token: 'at-planted-5f1c',
  refresh_token: 'rt-planted-9a7e',
  client_secret: 'cs-planted-2b64',
  code_verifier: 'cv-planted-77d0',
  pkce_verifier: 'pv-planted-c3a1',
  device_code: 'dc-planted-e85f',
  expiry: 4_000_000_000,
  token_type: 'Bearer',
}

let as: AuthServer
let session: SecureSession
let raw: RawClient
const secrets = new Set<string>()
const accessTokens = new Set<string>()

async function ask(op: string, payload: Record<string, unknown>): Promise<Record<string, unknown>> {
  const answer = await raw.request(op, payload)
  if (answer['ok'] !== true) throw new Error(`${op} failed: ${JSON.stringify(answer)}`)
  return answer['data'] as Record<string, unknown>
}

async function rememberStored(provider: string): Promise<void> {
  const stored = await session.stores.tokens.getToken(provider)
  if (stored?.refresh_token !== undefined) secrets.add(stored.refresh_token)
  if (stored !== null) accessTokens.add(stored.access_token)
}

/** Keys anywhere in a decoded frame. */
function keysOf(value: unknown, out: Set<string> = new Set()): Set<string> {
  if (value !== null && typeof value === 'object') {
    for (const [key, inner] of Object.entries(value)) {
      out.add(key)
      keysOf(inner, out)
    }
  }
  return out
}

beforeAll(async () => {
  as = await startAuthServer({ accessTokenTtlSeconds: 3_600 })
  session = await startSecureSession({
    grants: { providers: [{ provider: 'testprov' }, { provider: 'planted' }], keys: [], capabilities: ['read', 'login', 'save'] },
    prepare: async (paths) => void (await as.writeProvidersFile(paths.configDir, 'testprov', { flows: ['device_code'] })),
    oauth: async (stores, paths) => {
      const broker = await createOAuthBroker({ stores, paths, schedule: false, log: () => undefined })
      if (broker === null) throw new Error('providers.json was not read')
      return broker
    },
  })
  secrets.add(session.secret.toString('hex'))
  for (const field of HOST_ONLY_TOKEN_FIELDS) {
    const value = PLANTED[field]
    if (typeof value === 'string') secrets.add(value)
  }
  accessTokens.add(PLANTED.access_token)
  await session.stores.tokens.saveToken('planted', PLANTED)
  raw = await session.rawClient()

  // 1. Device login through the socket; the host keeps the device code and the refresh token.
  const login = await ask('oauth_initiate', { provider: 'testprov' })
  expect(login['flow_type']).toBe('device_code')
  await as.approveDevice(String(login['user_code']))
  for (;;) {
    const poll = await ask('oauth_poll', { session_id: login['session_id'] })
    if (poll['status'] === 'complete') break
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  await rememberStored('testprov')
  // 2. get_token of both tokens.
  await ask('get_token', { provider: 'testprov' })
  await ask('get_token', { provider: 'planted' })
  // 3. save_token from the sandbox, trying to plant its own refresh token.
  await ask('save_token', { provider: 'testprov', token: { access_token: 'at-from-sandbox', refresh_token: 'rt-from-sandbox', expiry: 4_000_000_000, token_type: 'Bearer' } })
  await rememberStored('testprov')
  // 4. refresh_token: the host refreshes with the stored refresh token (rotated by the server).
  await ask('refresh_token', { provider: 'testprov' })
  await rememberStored('testprov')
  await ask('refresh_token', { provider: 'planted' }).catch(() => undefined)
  for (const sent of as.refreshTokensSent) secrets.add(sent)
}, 60_000)

afterAll(async () => {
  await session.cleanup()
  await as.close()
})

describe('byte scan', () => {
  test('the session really exercised login, save and a host refresh', async () => {
    expect(as.refreshTokensSent.length).toBeGreaterThanOrEqual(1)
    const stored = await session.stores.tokens.getToken('testprov')
    // The sandbox's refresh token never replaced the host's.
    expect(stored?.refresh_token).toBeDefined()
    expect(stored?.refresh_token).not.toBe('rt-from-sandbox')
    expect(secrets.size).toBeGreaterThanOrEqual(8)
  })

  test('no host-only secret appears in any byte sent to the client', () => {
    const bytes = raw.receivedBytes()
    const text = bytes.toString('utf8')
    expect(text).toContain('at-planted-5f1c')
    for (const secret of secrets) {
      expect(text.includes(secret), `secret ${secret.slice(0, 6)}... crossed the socket`).toBe(false)
      expect(bytes.includes(Buffer.from(secret, 'utf8'))).toBe(false)
    }
  })

  test('no frame sent to the client carries a host-only field name (device code, verifier, secret, refresh token)', () => {
    const keys = new Set<string>()
    for (const frame of raw.frames) keysOf(frame, keys)
    for (const field of HOST_ONLY_TOKEN_FIELDS) expect(keys.has(field), field).toBe(false)
    expect(keys.has('user_code')).toBe(true)
  })

  test('the audit file holds no secret and no access token, yet records every operation', async () => {
    const text = await session.auditText()
    for (const secret of [...secrets, ...accessTokens, 'rt-from-sandbox', 'at-from-sandbox']) {
      expect(text.includes(secret), `secret ${secret.slice(0, 6)}... is in the audit file`).toBe(false)
    }
    const ops = (await session.auditLines()).filter((line) => line.event === 'request').map((line) => line.op)
    expect(ops).toEqual(expect.arrayContaining(['oauth_initiate', 'oauth_poll', 'get_token', 'save_token', 'refresh_token']))
  })
})
