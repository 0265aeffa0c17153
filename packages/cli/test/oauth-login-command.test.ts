// `credproxy auth login` on the host, in-process through main() with real file
// stores and a real oidc-provider: what the user sees, and what is stored.
import { PassThrough } from 'node:stream'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { main } from '../src/cli.js'
import type { CliIO } from '../src/cli-io.js'
import { EXIT } from '../src/exit-codes.js'
import { startAuthServer, type AuthServer } from './helpers/auth-server.js'
import { createOAuthTestEnv, type OAuthTestEnv } from './helpers/oauth-env.js'

function captureIO(env: NodeJS.ProcessEnv): CliIO & { out(): string; err(): string } {
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  let out = ''
  let err = ''
  stdout.on('data', (c: Buffer) => (out += c.toString()))
  stderr.on('data', (c: Buffer) => (err += c.toString()))
  return { stdin: new PassThrough(), stdout, stderr, env, cwd: process.cwd(), out: () => out, err: () => err }
}

async function waitFor(check: () => string | undefined): Promise<string> {
  for (let i = 0; i < 400; i += 1) {
    const value = check()
    if (value !== undefined) return value
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  throw new Error('timed out waiting for output')
}

describe('credproxy auth login (host)', () => {
  let as: AuthServer
  let t: OAuthTestEnv

  beforeAll(async () => {
    as = await startAuthServer()
    t = await createOAuthTestEnv(as)
  })
  afterAll(async () => {
    await as.close()
    await t.cleanup()
  })

  test('device flow: prints the URL and code, stores the token, never prints it', async () => {
    const io = captureIO(t.env)
    const exit = main(['auth', 'login', 'testprov', '--flow', 'device', '--bucket', 'work'], io)
    const code = await waitFor(() => /enter the code: (\S+)/.exec(io.err())?.[1])
    expect(io.err()).toContain(`${as.issuer}/device`)
    await as.approveDevice(code)
    expect(await exit).toBe(EXIT.OK)
    expect(io.out()).toMatch(/Logged in to testprov \(bucket work\)/)
    const stored = await t.stores.tokens.getToken('testprov', 'work')
    expect(stored?.refresh_token).toMatch(/\S/)
    for (const secret of [stored?.access_token ?? '', stored?.refresh_token ?? '']) {
      expect(io.out() + io.err()).not.toContain(secret)
    }
  })

  test('pkce flow with --no-browser: prints the URL; the loopback redirect completes it', async () => {
    const io = captureIO(t.env)
    const exit = main(['auth', 'login', 'testprov', '--flow', 'pkce', '--no-browser'], io)
    const url = await waitFor(() => /(http:\/\/127\.0\.0\.1:\d+\/auth\?\S+)/.exec(io.err())?.[1])
    const redirect = await as.completeAuthorization(url)
    expect((await fetch(redirect)).status).toBe(200)
    expect(await exit).toBe(EXIT.OK)
    expect((await t.stores.tokens.getToken('testprov', 'default'))?.refresh_token).toMatch(/\S/)
  })

  test('an unconfigured provider says where providers.json is and what to put in it', async () => {
    const io = captureIO(t.env)
    expect(await main(['auth', 'login', 'github'], io)).toBe(EXIT.NOT_FOUND)
    expect(io.err()).toContain("no OAuth provider 'github' is configured")
    expect(io.err()).toContain(t.providersFile)
    expect(io.err()).toContain('"client_id"')
  })

  test('a denied device login exits 5 with the command to try again', async () => {
    const io = captureIO(t.env)
    const exit = main(['auth', 'login', 'testprov', '--flow', 'device'], io)
    const code = await waitFor(() => /enter the code: (\S+)/.exec(io.err())?.[1])
    await as.denyDevice(code)
    expect(await exit).toBe(EXIT.AUTH_REQUIRED)
    expect(io.err()).toContain('was denied')
    expect(io.err()).toContain('credproxy auth login testprov')
  })
})
