// Pasting the redirect URL at `credproxy auth login P --flow pkce`: the login must
// finish with the pasted code (host, and inside a sandbox through a real broker),
// say it is exchanging, and show the real error when the exchange fails.
// A PassThrough marked as a terminal stands in for the keyboard (the prompt only
// asks on a terminal); everything else is real: oidc-provider, stores, broker socket.
import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { PassThrough } from 'node:stream'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { main } from '../src/cli.js'
import type { CliIO } from '../src/cli-io.js'
import { EXIT } from '../src/exit-codes.js'
import { createOAuthBroker, type HostOAuth } from '../src/credentials/host-oauth.js'
import { CredentialProxyServer, type StartedServer } from '../src/broker/credential-proxy-server.js'
import { startAuthServer, type AuthServer } from './helpers/auth-server.js'
import { cliEnv } from './helpers/cli-runner.js'
import { createOAuthTestEnv, type OAuthTestEnv } from './helpers/oauth-env.js'

const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url))

interface PasteIO extends CliIO {
  out(): string
  err(): string
  type(line: string): void
}

function pasteIO(env: NodeJS.ProcessEnv): PasteIO {
  const stdin = new PassThrough() as PassThrough & { isTTY?: boolean }
  stdin.isTTY = true
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  let out = ''
  let err = ''
  stdout.on('data', (c: Buffer) => (out += c.toString()))
  stderr.on('data', (c: Buffer) => (err += c.toString()))
  return { stdin, stdout, stderr, env, cwd: process.cwd(), out: () => out, err: () => err, type: (line) => stdin.write(`${line}\n`) }
}

async function waitFor(check: () => string | undefined): Promise<string> {
  for (let i = 0; i < 400; i += 1) {
    const value = check()
    if (value !== undefined) return value
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  throw new Error('timed out waiting for output')
}

const AUTH_URL = /(http:\/\/127\.0\.0\.1:\d+\/auth\?\S+)/

describe('auth login --flow pkce: pasting the code', () => {
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

  test('host: the pasted redirect URL completes the login (the loopback listener is never called)', async () => {
    const io = pasteIO(t.env)
    const exit = main(['auth', 'login', 'testprov', '--flow', 'pkce', '--no-browser', '--bucket', 'pasted'], io)
    const url = await waitFor(() => AUTH_URL.exec(io.err())?.[1])
    expect(io.err()).toContain('paste the code')
    // The browser ends at the loopback redirect; the user copies that URL instead of loading it.
    const redirect = await as.completeAuthorization(url)
    io.type(redirect)
    const code = await Promise.race([exit, new Promise<string>((resolve) => setTimeout(() => resolve('still waiting'), 10_000))])
    expect(code).toBe(EXIT.OK)
    expect(io.err()).toContain('Exchanging the code for a token...')
    expect(io.out()).toMatch(/Logged in to testprov \(bucket pasted\)/)
    expect((await t.stores.tokens.getToken('testprov', 'pasted'))?.refresh_token).toMatch(/\S/)
  })

  test('host: a wrong code ends the login with the real error, not silent polling', async () => {
    const io = pasteIO(t.env)
    const exit = main(['auth', 'login', 'testprov', '--flow', 'pkce', '--no-browser', '--bucket', 'wrong'], io)
    await waitFor(() => AUTH_URL.exec(io.err())?.[1])
    io.type('not-a-real-code')
    const code = await Promise.race([exit, new Promise<string>((resolve) => setTimeout(() => resolve('still waiting'), 10_000))])
    expect(code).toBe(EXIT.AUTH_REQUIRED)
    expect(io.err()).toContain('Exchanging the code for a token...')
    expect(io.err()).toContain('credproxy: the authorization server did not accept the pasted code (')
    expect(io.err()).toContain('Paste the whole redirect URL')
    expect(await t.stores.tokens.getToken('testprov', 'wrong')).toBeNull()
  })

  describe('inside a sandbox (the CLI as a client of a real broker socket)', () => {
    let broker: HostOAuth
    let server: CredentialProxyServer
    let started: StartedServer
    let inner: OAuthTestEnv

    beforeAll(async () => {
      // The host picks the first allowed flow for a login started inside: make it pkce.
      inner = await createOAuthTestEnv(as, 'testprov', { flows: ['pkce', 'device_code'] })
      const created = await createOAuthBroker({ stores: inner.stores, env: inner.env })
      if (created === null) throw new Error('no providers.json')
      broker = created
      server = new CredentialProxyServer({
        stores: inner.stores,
        oauth: broker.logins,
        credentials: broker.credentials,
        runtimeDir: join(inner.home, 'run'),
        grants: { providers: [{ provider: 'testprov' }], keys: [], capabilities: ['read', 'login'] },
      })
      started = await server.start()
    })
    afterAll(async () => {
      await server.stop()
      await broker.close()
      await inner.cleanup()
    })

    test('the pasted redirect URL completes a login started inside', async () => {
      const secretFile = join(inner.home, 'secret')
      await writeFile(secretFile, `${started.secret.toString('hex')}\n`, { mode: 0o600 })
      const env = { PATH: process.env['PATH'], CREDPROXY_SOCKET: started.socketPath, CREDPROXY_SECRET_FILE: secretFile }
      const io = pasteIO(env)
      const exit = main(['auth', 'login', 'testprov', '--bucket', 'inside'], io)
      const url = await waitFor(() => AUTH_URL.exec(io.err())?.[1])
      io.type(await as.completeAuthorization(url))
      const code = await Promise.race([exit, new Promise<string>((resolve) => setTimeout(() => resolve('still waiting'), 10_000))])
      expect(code).toBe(EXIT.OK)
      expect(io.err()).toContain('Exchanging the code for a token...')
      expect((await inner.stores.tokens.getToken('testprov', 'inside'))?.refresh_token).toMatch(/\S/)
    })

    test('in a real bwrap sandbox on a terminal (script(1) gives it a pty): the pasted URL completes the login', async () => {
      const cwd = await mkdtemp(join(tmpdir(), 'cp-paste-pty-'))
      const line = [process.execPath, BIN, 'run', '--sandbox', 'bwrap', '--grant', 'testprov', '--', 'credproxy', 'auth', 'login', 'testprov', '--bucket', 'pty']
      const child = spawn('script', ['-qfec', line.map((arg) => `'${arg}'`).join(' '), '/dev/null'], { cwd, env: cliEnv(inner.home), stdio: ['pipe', 'pipe', 'pipe'] })
      let output = ''
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
      const exited = new Promise<number | null>((resolve) => child.on('close', resolve))
      try {
        const url = await waitFor(() => AUTH_URL.exec(output)?.[1])
        expect(output).toContain('paste the code')
        child.stdin.write(`${await as.completeAuthorization(url)}\n`)
        const code = await Promise.race([exited, new Promise<string>((resolve) => setTimeout(() => resolve('still waiting'), 15_000))])
        expect(code).toBe(EXIT.OK)
        expect(output).toContain('Exchanging the code for a token...')
        expect(output).toMatch(/Logged in to testprov \(bucket pty\)/)
        expect((await inner.stores.tokens.getToken('testprov', 'pty'))?.refresh_token).toMatch(/\S/)
      } finally {
        child.kill('SIGKILL')
        await rm(cwd, { recursive: true, force: true })
      }
    }, 30_000)
  })
})
