// A refresh that stalls while holding the refresh lock (SIGSTOP, Ctrl-Z, a VM freeze)
// must not lead to one refresh token being sent twice: the provider would revoke the grant.
// End to end: two real processes, the real file store, the repository's oidc-provider server.
import { spawn, type ChildProcess } from 'node:child_process'
import { unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import type { OAuthToken } from '@credproxy/core'
import { createOAuthBroker, type HostOAuth } from '../src/credentials/host-oauth.js'
import { RefreshCoordinator } from '../src/oauth/refresh-coordinator.js'
import type { HostTokenStore } from '../src/storage/types.js'
import { startAuthServer, type AuthServer } from './helpers/auth-server.js'
import { deviceLogin } from './helpers/oauth-login.js'
import { createOAuthTestEnv, type OAuthTestEnv } from './helpers/oauth-env.js'

const P = 'testprov'
const CHILD = fileURLToPath(new URL('./fixtures/refresh-child.mjs', import.meta.url))
/** Longer than the 5 s after which the old mkdir+mtime lock was taken over as stale. */
const STALL_MS = 7_000

interface Run {
  child: ChildProcess
  lines: Record<string, unknown>[]
  exited: Promise<void>
  waitFor(key: string): Promise<Record<string, unknown>>
}

function run(env: NodeJS.ProcessEnv, args: string[]): Run {
  const child = spawn(process.execPath, [CHILD, ...args], { env, stdio: ['ignore', 'pipe', 'inherit'] })
  const lines: Record<string, unknown>[] = []
  let buffer = ''
  const waiters: (() => void)[] = []
  child.stdout?.on('data', (chunk: Buffer) => {
    buffer += chunk.toString()
    let nl
    while ((nl = buffer.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(buffer.slice(0, nl)) as Record<string, unknown>)
      buffer = buffer.slice(nl + 1)
      for (const w of waiters.splice(0)) w()
    }
  })
  let done = false
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      done = true
      for (const w of waiters.splice(0)) w()
      resolve()
    }),
  )
  return {
    child,
    lines,
    exited,
    async waitFor(key) {
      for (;;) {
        const line = lines.find((l) => key in l)
        if (line !== undefined) return line
        if (done) throw new Error(`the child exited without a ${key} line: ${JSON.stringify(lines)}`)
        await new Promise<void>((resolve) => waiters.push(resolve))
      }
    },
  }
}

describe('a refresh stalled under the lock', () => {
  let as: AuthServer
  let t: OAuthTestEnv
  let broker: HostOAuth

  beforeAll(async () => {
    as = await startAuthServer({ accessTokenTtlSeconds: 60 })
    t = await createOAuthTestEnv(as)
    const created = await createOAuthBroker({ stores: t.stores, env: t.env, schedule: false, refresh: { cooldownMs: 0 } })
    if (created === null) throw new Error('no providers.json')
    broker = created
  })
  afterAll(async () => {
    await broker.close()
    await as.close()
    await t.cleanup()
  })

  test('SIGSTOP past the old stale time, another process refreshes, SIGCONT: each refresh token is sent at most once and the grant still works', async () => {
    const login = await deviceLogin(broker, as, P, 'stall')
    const sentFrom = as.refreshTokensSent.length
    const first = run(t.env, [P, 'stall', 'stall'])
    await first.waitFor('stalling')
    const second = run(t.env, [P, 'stall'])
    await new Promise((resolve) => setTimeout(resolve, STALL_MS))
    first.child.kill('SIGCONT')
    await Promise.all([first.exited, second.exited])
    const a = await first.waitFor('token')
    const b = await second.waitFor('token')

    const sent = as.refreshTokensSent.slice(sentFrom)
    expect(sent[0]).toBe(login.refresh_token)
    expect(new Set(sent).size).toBe(sent.length)
    // Both processes end up with the same current token; the grant is intact.
    const stored = await t.stores.tokens.getToken(P, 'stall')
    expect((b['token'] as { access_token: string }).access_token).toBe(stored?.access_token)
    expect((a['token'] as { access_token: string }).access_token).toBe(stored?.access_token)
    await expect(broker.credentials.refreshNow(P, 'stall')).resolves.toMatchObject({ token_type: 'Bearer' })
    expect(new Set(as.refreshTokensSent.slice(sentFrom)).size).toBe(as.refreshTokensSent.length - sentFrom)
  }, 30_000)

  /** The real store; `onRead(n)` runs before its n-th getToken answers (1: before the lock, 2: the re-read under it, 3: the check before sending). */
  function watchedStore(onRead: (n: number) => Promise<void>): HostTokenStore {
    let reads = 0
    const real = t.stores.tokens
    return new Proxy(real, {
      get(target, prop) {
        if (prop === 'getToken') {
          return async (provider: string, bucket?: string) => {
            reads += 1
            await onRead(reads)
            return real.getToken(provider, bucket)
          }
        }
        const value: unknown = Reflect.get(target, prop)
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value
      },
    })
  }

  const expired = (refresh: string): OAuthToken => ({ access_token: `at-${refresh}`, refresh_token: refresh, expiry: 1, token_type: 'Bearer' })

  test('a holder whose lock was lost (its lock file removed) sends nothing', async () => {
    await t.stores.tokens.saveToken(P, expired('rt-lost'), 'lost')
    const sent: string[] = []
    const coordinator = new RefreshCoordinator({
      tokens: watchedStore(async (n) => {
        if (n === 2) await unlink(join(t.paths.stateDir, 'locks', `refresh+token+${P}+lost.flock`))
      }),
      grant: (_p, rt) => {
        sent.push(rt)
        return Promise.reject(new Error('must not be called'))
      },
    })
    await expect(coordinator.refresh(P, 'lost')).rejects.toMatchObject({ code: 'REFRESH_FAILED' })
    expect(sent).toEqual([])
  })

  test('a refresh token replaced in the store after the re-read is not sent; the stored token is returned', async () => {
    await t.stores.tokens.saveToken(P, expired('rt-old'), 'swapped')
    const newer = { ...expired('rt-newer'), expiry: Math.floor(Date.now() / 1000) + 3600 }
    const sent: string[] = []
    const coordinator = new RefreshCoordinator({
      tokens: watchedStore(async (n) => {
        // A writer that ignores the refresh lock (an older credproxy, a manual import) lands just before the request.
        if (n === 3) await t.stores.tokens.saveToken(P, newer, 'swapped')
      }),
      grant: (_p, rt) => {
        sent.push(rt)
        return Promise.reject(new Error('must not be called'))
      },
    })
    await expect(coordinator.refresh(P, 'swapped')).resolves.toMatchObject({ refresh_token: 'rt-newer' })
    expect(sent).toEqual([])
  })
})
