// OAuth from inside a real bubblewrap sandbox through `credproxy run`, in-process
// via main(): the sandbox has no network, so the host broker talks to the local
// authorization server; the sandbox sees only sanitized tokens. Needs `npm run build`
// (the sandbox runs the built `credproxy`).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { EXIT } from '../src/exit-codes.js'
import { openHostStores } from '../src/storage/index.js'
import { startAuthServer, type AuthServer } from './helpers/auth-server.js'
import { cliEnv, startCli, type RunningCli } from './helpers/cli-runner.js'
import { createOAuthTestEnv, type OAuthTestEnv } from './helpers/oauth-env.js'

const P = 'testprov'

async function waitFor<T>(check: () => T | undefined, running: RunningCli): Promise<T> {
  let settled = false
  void running.exit.then(() => (settled = true))
  for (let i = 0; i < 800; i += 1) {
    const value = check()
    if (value !== undefined) return value
    if (settled) throw new Error(`the command exited first:\n${running.stdout()}\n${running.stderr()}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  throw new Error(`timed out waiting for output:\n${running.stdout()}\n${running.stderr()}`)
}

describe('credproxy auth inside `credproxy run --sandbox bwrap`', () => {
  let as: AuthServer
  let t: OAuthTestEnv
  let env: NodeJS.ProcessEnv
  let cwd: string

  beforeAll(async () => {
    expect(() => readFileSync(fileURLToPath(new URL('../dist/bin.js', import.meta.url)))).not.toThrow()
    cwd = mkdtempSync(join(tmpdir(), 'cp-sandbox-auth-'))
    as = await startAuthServer()
    t = await createOAuthTestEnv(as, P)
    // A minimal host env: nothing of the test runner's own environment reaches the sandbox.
    env = cliEnv(t.home)
  })
  afterAll(async () => {
    await as.close()
    await t.cleanup()
    rmSync(cwd, { recursive: true, force: true })
  })

  test('device login from inside: the host stores the refresh token, the sandbox never sees it', async () => {
    const script = `credproxy auth login ${P} && echo ---token--- && credproxy token ${P} --json && credproxy auth status ${P} --json`
    const run = startCli(['run', '--sandbox', 'bwrap', '--grant', P, '--', 'sh', '-c', script], { env, cwd })
    // The sandboxed command prints the code while it waits; the test approves it as the user would.
    const userCode = await waitFor(() => /enter the code: (\S+)/.exec(run.stderr())?.[1], run)
    expect(run.stderr()).toContain(`${as.issuer}/device`)
    await as.approveDevice(userCode)
    expect(await run.exit).toBe(EXIT.OK)

    const stores = await openHostStores({ env, log: () => undefined })
    const stored = await stores.tokens.getToken(P, 'default')
    expect(stored?.refresh_token).toMatch(/\S/)
    const output = run.stdout() + run.stderr()
    expect(output).toContain(`Logged in to ${P}`)
    expect(output).not.toContain(stored?.refresh_token ?? '<none>')
    expect(output).not.toContain('refresh_token')
    // The follow-up `credproxy token` inside gets the host's access token, sanitized.
    const [, after = ''] = run.stdout().split('---token---\n')
    const [tokenLine = '', statusLine = ''] = after.trim().split('\n')
    expect(JSON.parse(tokenLine)).toEqual({ access_token: stored?.access_token, token_type: stored?.token_type, expiry: stored?.expiry })
    const status = JSON.parse(statusLine) as { backend: string; providers: { provider: string; buckets: { bucket: string; expiry: number; refreshable: boolean }[] }[] }
    expect(status.backend).toBe('broker')
    expect(status.providers).toEqual([{ provider: P, buckets: [expect.objectContaining({ bucket: 'default', expiry: stored?.expiry })] }])
    expect(statusLine).not.toContain(stored?.access_token ?? '<none>')
  })

  test('`credproxy auth status` inside lists only the granted providers and buckets, with expiry, never a secret', async () => {
    const stores = await openHostStores({ env, log: () => undefined })
    const expiry = Math.floor(Date.now() / 1000) + 3600
    await stores.tokens.saveToken(P, { access_token: 'at-work-5e1d', refresh_token: 'rt-work-9a7c', token_type: 'Bearer', expiry }, 'work')
    await stores.tokens.saveToken('other', { access_token: 'at-other-31f0', refresh_token: 'rt-other-c4b2', token_type: 'Bearer', expiry }, 'default')
    const run = startCli(['run', '--sandbox', 'bwrap', '--grant', `${P}:work`, '--', 'credproxy', 'auth', 'status'], { env, cwd })
    expect(await run.exit).toBe(EXIT.OK)
    const out = run.stdout()
    expect(out).toContain('Backend: broker')
    expect(out).toMatch(new RegExp(`^${P}\\n  work +expires in (59|60) min, refreshed by the host`, 'm'))
    expect(out).not.toContain('other')
    expect(out).not.toMatch(/^ {2}default/m)
    for (const secret of ['at-work-5e1d', 'rt-work-9a7c', 'at-other-31f0', 'rt-other-c4b2']) expect(out + run.stderr()).not.toContain(secret)
  })
})
