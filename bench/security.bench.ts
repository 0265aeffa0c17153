// Cost of the security boundary: a v3 (mutual HMAC proof) handshake beside a v2
// bearer-token one, and get_token with and without the peer check and the audit
// file. Real Unix sockets, real file stores (keyring off), in one process.
import { mkdtemp, rm } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { computeClientProof, encodeFrame, FrameDecoder, generateNonce, ProxySocketClient } from '@credproxy/core'
import { resolvePaths } from '../packages/cli/src/paths.js'
import { AuditLog, auditLogPath } from '../packages/cli/src/server/audit-log.js'
import { CredentialProxyServer } from '../packages/cli/src/server/credential-proxy-server.js'
import { createPeerCheck } from '../packages/cli/src/server/peer-credentials.js'
import { openHostStores } from '../packages/cli/src/storage/index.js'
import { fmtMs, summarize, timeIt } from './stats.js'

const HANDSHAKES = 300
const REQUESTS = 1_000
const LEGACY_TOKEN = 'b'.repeat(64)
const NO_RATE_LIMIT = { rateLimitPerSecond: 1_000_000, rateLimitBurst: 1_000_000 }

/** Connect, run one handshake, close. Returns once the server has accepted it. */
function handshake(socketPath: string, secret: Buffer, version: 2 | 3): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket: Socket = connect(socketPath)
    const decoder = new FrameDecoder()
    const clientNonce = generateNonce()
    socket.on('error', reject)
    socket.on('connect', () => {
      socket.write(
        encodeFrame(
          version === 3
            ? { v: 3, op: 'handshake', payload: { minVersion: 3, maxVersion: 3, clientNonce } }
            : { v: 2, op: 'handshake', payload: { minVersion: 1, maxVersion: 2, capabilityToken: LEGACY_TOKEN } },
        ),
      )
    })
    socket.on('data', (chunk: Buffer) => {
      for (const frame of decoder.push(chunk)) {
        if (frame['ok'] !== true) return reject(new Error(JSON.stringify(frame)))
        const data = frame['data'] as { serverNonce?: string }
        if (version === 3 && frame['op'] === 'handshake') {
          const clientProof = computeClientProof(secret, data.serverNonce ?? '', clientNonce)
          socket.write(encodeFrame({ v: 3, op: 'handshake_finish', payload: { clientProof } }))
        } else {
          socket.destroy()
          resolve()
        }
      }
    })
  })
}

export async function run(): Promise<void> {
  const home = await mkdtemp(join(tmpdir(), 'credproxy-bench-sec-'))
  const env = { CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' }
  const paths = resolvePaths(env)
  const stores = await openHostStores({ env, paths, log: () => undefined })
  await stores.tokens.saveToken('anthropic', { access_token: 'at', expiry: 4_000_000_000, token_type: 'Bearer' })
  const audit = await AuditLog.open(auditLogPath(paths))
  const grants = { providers: [{ provider: 'anthropic' }], keys: [], capabilities: ['read' as const] }
  const rows: string[][] = []
  try {
    for (const guarded of [false, true]) {
      const server = new CredentialProxyServer({
        stores,
        runtimeDir: paths.runtimeDir,
        grants,
        allowLegacyClients: true,
        legacyToken: LEGACY_TOKEN,
        limits: { ...NO_RATE_LIMIT, maxConnectionsPerSession: 1_000 },
        ...(guarded ? { peerCheck: createPeerCheck(), audit } : {}),
      })
      const { socketPath, secret } = await server.start()
      const label = guarded ? 'peer check + audit' : 'no peer check, no audit'
      for (const version of [2, 3] as const) {
        const samples: number[] = []
        for (let i = 0; i < HANDSHAKES; i++) samples.push(await timeIt(() => handshake(socketPath, secret, version)))
        const s = summarize(samples)
        rows.push([`v${version} connect + handshake`, label, String(s.n), fmtMs(s.p50), fmtMs(s.p99)])
      }
      const client = new ProxySocketClient({ socketPath, secret })
      await client.request('get_token', { provider: 'anthropic' })
      const samples: number[] = []
      for (let i = 0; i < REQUESTS; i++) samples.push(await timeIt(() => client.request('get_token', { provider: 'anthropic' })))
      const s = summarize(samples)
      rows.push(['get_token (v3, open connection)', label, String(s.n), fmtMs(s.p50), fmtMs(s.p99)])
      client.close()
      await server.stop()
    }
  } finally {
    await audit.close()
    await rm(home, { recursive: true, force: true })
  }
  const header = ['operation', 'server', 'n', 'p50', 'p99']
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ')
  console.log(line(header))
  console.log(line(widths.map((w) => '-'.repeat(w))))
  for (const row of rows) console.log(line(row))
}
