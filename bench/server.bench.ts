// get_token round trips through CredentialProxyServer beside a raw Unix-socket echo
// of the same frame bytes (same run, same client), memory of 1,000 idle
// connections, and the v3 handshake beside v2's. Store: in memory, so the numbers
// are the server's own cost (framing, validation, grants, audit hook, sanitize).
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { encodeFrame, FrameDecoder } from '@credproxy/core'
import { CredentialProxyServer } from '../packages/cli/src/server/credential-proxy-server.js'
import { memoryStores } from '../packages/cli/test/helpers/server-memory-stores.js'
import { RawClient } from '../packages/cli/test/helpers/server-raw-client.js'
import { fmtMs, summarize } from './stats.js'

const ROUNDS = 3_000
const CLIENTS = 16
const IDLE_CONNECTIONS = 1_000
const HANDSHAKES = 300
const TOKEN = { access_token: 'at-bench', refresh_token: 'rt-bench', expiry: 4_102_444_800, token_type: 'Bearer', scope: 'a b c' }
const REQUEST = { v: 3, op: 'get_token', payload: { provider: 'anthropic' } }

/** Answers every frame with the bytes the broker would send for get_token. */
async function echoServer(path: string): Promise<Server> {
  const server = createServer((socket) => {
    const decoder = new FrameDecoder()
    socket.on('data', (chunk: Buffer) => {
      for (const frame of decoder.push(chunk)) {
        const { refresh_token: _r, ...data } = TOKEN
        socket.write(encodeFrame({ id: frame['id'], ok: true, data }))
      }
    })
    socket.on('error', () => undefined)
  })
  await new Promise<void>((resolve) => server.listen(path, resolve))
  return server
}

async function roundTrips(client: RawClient, n: number, prefix: string, samples: number[]): Promise<void> {
  for (let i = 0; i < n; i++) {
    const id = `${prefix}${i}`
    const start = process.hrtime.bigint()
    client.send({ ...REQUEST, id })
    await client.answerTo(id)
    samples.push(Number(process.hrtime.bigint() - start) / 1e6)
    client.frames.length = 0
  }
}

async function measure(clients: RawClient[], total: number): Promise<{ p50: number; p99: number; rps: number }> {
  const samples: number[] = []
  const per = Math.floor(total / clients.length)
  await Promise.all(clients.map((c, k) => roundTrips(c, 100, `w${k}-`, []))) // warm-up
  const start = process.hrtime.bigint()
  await Promise.all(clients.map((c, k) => roundTrips(c, per, `m${k}-`, samples)))
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  const s = summarize(samples)
  return { p50: s.p50, p99: s.p99, rps: samples.length / seconds }
}

function mib(bytes: number): string {
  return `${(bytes / 1_048_576).toFixed(1)} MiB`
}

export async function run(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cpb-'))
  const stores = memoryStores()
  await stores.tokens.saveToken('anthropic', TOKEN)
  let audited = 0
  const broker = new CredentialProxyServer({
    stores,
    runtimeDir: join(dir, 'run'),
    grants: { providers: [{ provider: '*' }], keys: ['*'], capabilities: ['read'] },
    allowLegacyClients: true,
    limits: { rateLimitPerSecond: 1e9, rateLimitBurst: 1e9, maxConnectionsPerSession: IDLE_CONNECTIONS + 100 },
    audit: { write: () => void audited++ },
  })
  const started = await broker.start()
  const echoPath = join(dir, 'echo.sock')
  const echo = await echoServer(echoPath)
  try {
    const connectBroker = async (): Promise<RawClient> => {
      const c = await RawClient.connect(started.socketPath)
      await c.handshakeV3(started.secret)
      c.frames.length = 0
      return c
    }
    const connectEcho = (): Promise<RawClient> => RawClient.connect(echoPath)

    const rows: string[] = []
    for (const n of [1, CLIENTS]) {
      const bc = await Promise.all(Array.from({ length: n }, connectBroker))
      const ec = await Promise.all(Array.from({ length: n }, connectEcho))
      const b = await measure(bc, ROUNDS)
      const e = await measure(ec, ROUNDS)
      for (const c of [...bc, ...ec]) c.close()
      rows.push(
        `| ${String(n).padStart(2)} client(s) | ${fmtMs(b.p50)} / ${fmtMs(e.p50)} = ${(b.p50 / e.p50).toFixed(2)}x | ` +
          `${fmtMs(b.p99)} / ${fmtMs(e.p99)} = ${(b.p99 / e.p99).toFixed(2)}x | ` +
          `${b.rps.toFixed(0)} / ${e.rps.toFixed(0)} = ${(b.rps / e.rps).toFixed(2)}x |`,
      )
    }
    console.log('get_token round trips, broker / raw echo (targets: p50 <= 1.5x, p99 <= 3x, 16-client req/s >= 0.5x)')
    console.log('| clients | p50 | p99 | requests/s |')
    console.log('|---|---|---|---|')
    for (const r of rows) console.log(r)
    console.log(`(audit hook called ${audited} times)`)

    // Handshake cost: connect + handshake, sequentially.
    const v3: number[] = []
    const v2: number[] = []
    for (let i = 0; i < HANDSHAKES; i++) {
      let t = process.hrtime.bigint()
      const a = await RawClient.connect(started.socketPath)
      await a.handshakeV3(started.secret)
      v3.push(Number(process.hrtime.bigint() - t) / 1e6)
      a.close()
      t = process.hrtime.bigint()
      const b = await RawClient.connect(started.socketPath)
      await b.handshakeLegacy(started.secret.toString('hex'), 2)
      v2.push(Number(process.hrtime.bigint() - t) / 1e6)
      b.close()
    }
    const s3 = summarize(v3)
    const s2 = summarize(v2)
    console.log('\nconnect + handshake')
    console.log('| handshake | p50 | p99 |')
    console.log('|---|---|---|')
    console.log(`| v2 bearer token | ${fmtMs(s2.p50)} | ${fmtMs(s2.p99)} |`)
    console.log(`| v3 mutual proof | ${fmtMs(s3.p50)} | ${fmtMs(s3.p99)} |`)
    console.log(`| v3 / v2 | ${(s3.p50 / s2.p50).toFixed(2)}x | ${(s3.p99 / s2.p99).toFixed(2)}x |`)

    // Memory: both ends live in this process, so the growth is an upper bound for the server.
    await new Promise((r) => setTimeout(r, 200))
    globalThis.gc?.()
    const before = process.memoryUsage()
    const idle = []
    for (let i = 0; i < IDLE_CONNECTIONS; i++) idle.push(await connectBroker())
    globalThis.gc?.()
    const after = process.memoryUsage()
    console.log(`\n${IDLE_CONNECTIONS} idle v3 connections (client and server ends in one process; gc ${globalThis.gc ? 'forced' : 'not exposed'})`)
    console.log('| metric | growth | per connection |')
    console.log('|---|---|---|')
    console.log(`| RSS | ${mib(after.rss - before.rss)} | ${((after.rss - before.rss) / IDLE_CONNECTIONS / 1024).toFixed(1)} KiB |`)
    console.log(`| heap used | ${mib(after.heapUsed - before.heapUsed)} | ${((after.heapUsed - before.heapUsed) / IDLE_CONNECTIONS / 1024).toFixed(1)} KiB |`)
    for (const c of idle) c.close()
  } finally {
    await broker.stop()
    await new Promise<void>((resolve) => echo.close(() => resolve()))
    await rm(dir, { recursive: true, force: true })
  }
}
