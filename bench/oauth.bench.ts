// Host OAuth refresh: time from an expired token to a refreshed token served,
// through the broker and through the socket (server + client), and the number of
// refresh requests the authorization server sees under a 200-call stampede.
// Runs a real oidc-provider on 127.0.0.1 (packages/cli/test/helpers/auth-server.ts).
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ProxySocketClient, ProxyTokenStore } from '@credproxy/core'
import { createOAuthBroker, type HostOAuth } from '../packages/cli/src/credentials/host-oauth.js'
import { CredentialProxyServer } from '../packages/cli/src/broker/credential-proxy-server.js'
import { startAuthServer } from '../packages/cli/test/helpers/auth-server.js'
import { deviceLogin } from '../packages/cli/test/helpers/oauth-login.js'
import { createOAuthTestEnv } from '../packages/cli/test/helpers/oauth-env.js'
import { fmtMs, summarize, timeIt } from './stats.js'

const ITERATIONS = 30
const STAMPEDE_CALLS = 200
const P = 'testprov'

export async function run(): Promise<void> {
  const as = await startAuthServer({ accessTokenTtlSeconds: 300 })
  const t = await createOAuthTestEnv(as)
  const runDir = await mkdtemp(join(tmpdir(), 'cp-bench-oauth-'))
  // No cooldown: every iteration must really refresh.
  const broker = (await createOAuthBroker({ stores: t.stores, env: t.env, schedule: false, refresh: { cooldownMs: 0 } })) as HostOAuth
  const server = new CredentialProxyServer({
    stores: t.stores,
    oauth: broker.logins,
    credentials: broker.credentials,
    runtimeDir: runDir,
    grants: { providers: [{ provider: P }], keys: [], capabilities: ['read'] },
    limits: { rateLimitPerSecond: 100_000, rateLimitBurst: 100_000 },
  })
  const started = await server.start()
  const client = new ProxySocketClient({ socketPath: started.socketPath, secret: started.secret })
  const proxyStore = new ProxyTokenStore(client)
  const expire = (bucket: string) =>
    t.stores.tokens.updateToken(P, bucket, (c) => (c === null ? null : { ...c, expiry: Math.floor(Date.now() / 1000) - 5 }))
  try {
    await deviceLogin(broker, as, P, 'default')
    const viaBroker: number[] = []
    const viaSocket: number[] = []
    for (let i = 0; i < ITERATIONS; i += 1) {
      await expire('default')
      viaBroker.push(await timeIt(() => broker.credentials.freshToken(P, 'default')))
      await expire('default')
      viaSocket.push(await timeIt(() => proxyStore.getToken(P, 'default')))
    }
    await deviceLogin(broker, as, P, 'stampede')
    await expire('stampede')
    const before = as.refreshRequests
    const stampedeMs = await timeIt(() => Promise.all(Array.from({ length: STAMPEDE_CALLS }, () => proxyStore.getToken(P, 'stampede'))))
    const refreshes = as.refreshRequests - before

    const rows = [
      ['expired -> refreshed token', 'n', 'p50', 'p99', 'mean'],
      ...[
        ['through the broker', summarize(viaBroker)],
        ['through the socket', summarize(viaSocket)],
      ].map(([name, s]) => {
        const stats = s as ReturnType<typeof summarize>
        return [name as string, String(stats.n), fmtMs(stats.p50), fmtMs(stats.p99), fmtMs(stats.mean)]
      }),
    ]
    for (const row of rows) console.log(`| ${row.map((c, i) => c.padEnd(i === 0 ? 28 : 10)).join(' | ')} |`)
    console.log(`\nstampede: ${STAMPEDE_CALLS} concurrent get_token over the socket on an expired token -> ${refreshes} refresh request(s) at the server, all answered in ${fmtMs(stampedeMs)}`)
  } finally {
    client.close()
    await server.stop()
    await broker.close()
    await as.close()
    await t.cleanup()
    await rm(runDir, { recursive: true, force: true })
  }
}
