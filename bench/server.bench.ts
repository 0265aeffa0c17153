// get_token round trips through CredentialProxyServer beside a raw Unix-socket echo
// of the same frame bytes (same run, same client), memory of 1,000 idle
// connections, and the v3 handshake beside v2's. Store: in memory, so the numbers
// are the server's own cost (framing, validation, grants, audit hook, sanitize).
import { mkdtemp, rm } from 'node:fs/promises'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { encodeFrame, FrameDecoder } from '@credproxy/core'
import { CredentialProxyServer } from '../packages/cli/src/broker/credential-proxy-server.js'
import { memoryStores } from '../packages/cli/test/helpers/server-memory-stores.js'
import { RawClient } from '../packages/cli/test/helpers/server-raw-client.js'
import { fmtMs, summarize } from './stats.js'

const SAMPLES_PER_ROUND = 3_000
const MEASURED_ROUNDS = 5
const WARMUP_REQUESTS = 500
const LEGACY_TOKEN = 'b'.repeat(64)
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

/**
 * The one client both servers get: one request at a time, answers matched by id,
 * nothing kept after its answer (RawClient keeps every byte, which would add GC
 * noise that grows with the run).
 */
class BenchClient {
  readonly #decoder = new FrameDecoder()
  #waiting: { id: string; resolve: () => void } | undefined

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const frame of this.#decoder.push(chunk)) {
        const w = this.#waiting
        if (w !== undefined && frame['id'] === w.id) {
          this.#waiting = undefined
          w.resolve()
        }
      }
    })
    socket.on('error', () => undefined)
  }

  static async connect(path: string, secret?: Buffer): Promise<BenchClient> {
    if (secret !== undefined) {
      const raw = await RawClient.connect(path)
      await raw.handshakeV3(secret)
      raw.socket.removeAllListeners('data')
      return new BenchClient(raw.socket)
    }
    const socket = connect(path)
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
    return new BenchClient(socket)
  }

  request(id: string): Promise<void> {
    return new Promise((resolve) => {
      this.#waiting = { id, resolve }
      this.socket.write(encodeFrame({ ...REQUEST, id }))
    })
  }

  close(): void {
    this.socket.destroy()
  }
}

async function roundTrips(client: BenchClient, n: number, prefix: string, samples: number[] | undefined): Promise<void> {
  for (let i = 0; i < n; i++) {
    const start = process.hrtime.bigint()
    await client.request(`${prefix}${i}`)
    samples?.push(Number(process.hrtime.bigint() - start) / 1e6)
  }
}

interface Round {
  p50: number
  p99: number
  rps: number
}

async function measure(clients: BenchClient[], total: number, tag: string): Promise<Round> {
  const samples: number[] = []
  const per = Math.floor(total / clients.length)
  globalThis.gc?.()
  const start = process.hrtime.bigint()
  await Promise.all(clients.map((c, k) => roundTrips(c, per, `${tag}-${k}-`, samples)))
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  const s = summarize(samples)
  return { p50: s.p50, p99: s.p99, rps: samples.length / seconds }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN
}

/**
 * Broker and echo take turns (alternating which goes first), after a warm-up of
 * both; each metric is reported as its median over the rounds, and the ratio as the
 * median of the per-round ratios, so one noisy round (GC, a neighbour on the CPU)
 * does not decide the result.
 */
async function compare(broker: BenchClient[], echo: BenchClient[]): Promise<string> {
  await Promise.all([...broker, ...echo].map((c, k) => roundTrips(c, WARMUP_REQUESTS, `w${k}-`, undefined)))
  const b: Round[] = []
  const e: Round[] = []
  for (let round = 0; round < MEASURED_ROUNDS; round++) {
    if (round % 2 === 0) {
      b.push(await measure(broker, SAMPLES_PER_ROUND, `b${round}`))
      e.push(await measure(echo, SAMPLES_PER_ROUND, `e${round}`))
    } else {
      e.push(await measure(echo, SAMPLES_PER_ROUND, `e${round}`))
      b.push(await measure(broker, SAMPLES_PER_ROUND, `b${round}`))
    }
  }
  const cell = (metric: keyof Round, fmt: (v: number) => string): string => {
    const ratio = median(b.map((r, i) => r[metric] / (e[i]?.[metric] ?? Number.NaN)))
    return `${fmt(median(b.map((r) => r[metric])))} / ${fmt(median(e.map((r) => r[metric])))} = ${ratio.toFixed(2)}x`
  }
  return `| ${cell('p50', fmtMs)} | ${cell('p99', fmtMs)} | ${cell('rps', (v) => v.toFixed(0))} |`
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
    legacyToken: LEGACY_TOKEN,
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

    const rows: string[] = []
    for (const n of [1, CLIENTS]) {
      const bc = await Promise.all(Array.from({ length: n }, () => BenchClient.connect(started.socketPath, started.secret)))
      const ec = await Promise.all(Array.from({ length: n }, () => BenchClient.connect(echoPath)))
      rows.push(`| ${String(n).padStart(2)} client(s) ${await compare(bc, ec)}`)
      for (const c of [...bc, ...ec]) c.close()
    }
    console.log('get_token round trips, broker / raw echo (targets: p50 <= 1.5x, p99 <= 3x, 16-client req/s >= 0.5x)')
    console.log(
      `(${MEASURED_ROUNDS} alternating rounds of ${SAMPLES_PER_ROUND} round trips per side after ${WARMUP_REQUESTS} warm-up each; ` +
        `medians over rounds; gc between rounds: ${globalThis.gc ? 'forced' : 'not exposed'})`,
    )
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
      await b.handshakeLegacy(LEGACY_TOKEN, 2)
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
