// Connection limits of the egress proxy: a sandbox that opens connections and then
// goes quiet (a CONNECT that never starts TLS, an idle tunnel) or opens very many
// cannot hold the host's descriptors. The limits are shortened through `limits`.
import { mkdtempSync, rmSync } from 'node:fs'
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { startEgressProxy, type EgressAuditEvent, type EgressProxy } from '../src/egress/index.js'
import { EgressRuleSchema } from '../src/egress/rules.js'
import { MAX_UPSTREAM_DESTINATIONS, UpstreamPool, type UpstreamTarget } from '../src/egress/upstream.js'
import { createServer as createHttpServer } from 'node:http'
import { startTestUpstream, type TestUpstream } from './helpers/egress-test-upstream.js'

const HANDSHAKE_MS = 300
const IDLE_MS = 600
const MAX_CONNECTIONS = 4

let dir: string
let upstream: TestUpstream
let echo: NetServer
let proxy: EgressProxy
const audit: EgressAuditEvent[] = []

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cp-egress-limits-'))
  upstream = await startTestUpstream(dir, (_req, res) => res.end('ok'), { names: ['api.example.test'] })
  // A plain TCP echo server: the target of an allowed (tunnelled) host.
  echo = createNetServer((socket) => socket.pipe(socket))
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve))
  proxy = await startEgressProxy({
    session: 'egress-limits',
    rules: [
      EgressRuleSchema.parse({
        name: 'example',
        hosts: ['api.example.test'],
        credential: { key: 'K' },
        inject: { header: 'authorization', format: 'Bearer {}' },
        upstream: `127.0.0.1:${upstream.port}`,
        ca: upstream.caFile,
      }),
    ],
    grantedRules: () => new Set(['example']),
    credentials: { apiKey: () => Promise.resolve('secret-value'), accessToken: () => Promise.resolve(null) },
    audit: (event) => audit.push(event),
    socketPath: join(dir, 'egress.sock'),
    allowedHosts: ['127.0.0.1'],
    limits: { handshakeTimeoutMs: HANDSHAKE_MS, idleTimeoutMs: IDLE_MS, maxConnections: MAX_CONNECTIONS },
  })
})

afterAll(async () => {
  await proxy.close()
  await upstream.close()
  echo.close()
  rmSync(dir, { recursive: true, force: true })
})

/** A CONNECT on the Unix socket; resolves once the proxy answered 200. */
function connectThrough(target: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(join(dir, 'egress.sock'))
    socket.once('data', (chunk: Buffer) => (chunk.toString().startsWith('HTTP/1.1 200') ? resolve(socket) : reject(new Error(chunk.toString()))))
    socket.once('error', reject)
    socket.write(`CONNECT ${target} HTTP/1.1\r\n\r\n`)
  })
}

function closed(socket: Socket): Promise<number> {
  const started = performance.now()
  return new Promise((resolve) => socket.once('close', () => resolve(performance.now() - started)))
}

describe('connection limits', () => {
  test('an intercepted CONNECT that never starts TLS is closed after the handshake timeout', async () => {
    const socket = await connectThrough('api.example.test:443')
    const after = await closed(socket)
    expect(after).toBeGreaterThanOrEqual(HANDSHAKE_MS - 50)
    expect(after).toBeLessThan(5_000)
  })

  test('a tunnel is closed after the idle timeout, not while bytes flow', async () => {
    const socket = await connectThrough(`127.0.0.1:${(echo.address() as AddressInfo).port}`)
    const ended = closed(socket)
    let open = true
    void ended.then(() => (open = false))
    let echoed = ''
    socket.on('data', (chunk: Buffer) => (echoed += chunk.toString()))
    // Traffic every IDLE_MS / 3 for twice the idle timeout keeps the tunnel.
    for (let i = 0; i < 6; i++) {
      socket.write('x')
      await new Promise((resolve) => setTimeout(resolve, IDLE_MS / 3))
    }
    expect(open).toBe(true)
    expect(echoed).toBe('xxxxxx')
    const idleFor = await ended
    expect(idleFor).toBeLessThan(5_000)
  })

  test('connections beyond the cap are dropped at accept and audited; one closing makes room', async () => {
    const held: Socket[] = []
    for (let i = 0; i < MAX_CONNECTIONS; i++) {
      const socket = netConnect(join(dir, 'egress.sock'))
      socket.on('error', () => undefined)
      await new Promise((resolve) => socket.once('connect', resolve))
      held.push(socket)
    }
    const from = audit.length
    const extra = netConnect(join(dir, 'egress.sock'))
    extra.on('error', () => undefined)
    await closed(extra)
    expect(audit.slice(from).some((event) => event.reason === 'too-many-connections' && event.status === 503)).toBe(true)
    const first = held.shift()
    first?.destroy()
    if (first !== undefined) await closed(first).catch(() => undefined)
    await new Promise((resolve) => setTimeout(resolve, 50))
    const tunnel = await connectThrough(`127.0.0.1:${(echo.address() as AddressInfo).port}`)
    tunnel.destroy()
    for (const socket of held) socket.destroy()
  })
})

describe('upstream pool state', () => {
  test('a wildcard rule naming ever new hosts keeps at most MAX_UPSTREAM_DESTINATIONS agents; an evicted one still works', async () => {
    const server = createHttpServer((req, res) => res.end(String(req.headers.host)))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as AddressInfo).port
    const pool = new UpstreamPool()
    const target = (i: number): UpstreamTarget => ({ scheme: 'http', host: `h${i}.example.test`, port: 80, pinned: { host: '127.0.0.1', port }, extraCa: [] })
    const fetch = async (i: number): Promise<string> => {
      const { response } = await pool.request(target(i), { method: 'GET', path: '/', headers: {}, body: null })
      const chunks: Buffer[] = []
      for await (const chunk of response) chunks.push(chunk as Buffer)
      return Buffer.concat(chunks).toString()
    }
    try {
      for (let i = 0; i < MAX_UPSTREAM_DESTINATIONS + 20; i++) expect(await fetch(i)).toBe(`h${i}.example.test`)
      expect(pool.sizes().agents).toBe(MAX_UPSTREAM_DESTINATIONS)
      expect(await fetch(0)).toBe('h0.example.test')
      expect(pool.sizes().agents).toBe(MAX_UPSTREAM_DESTINATIONS)
    } finally {
      pool.close()
      server.closeAllConnections()
      server.close()
    }
  })
})
