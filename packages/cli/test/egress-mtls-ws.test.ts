// Upstream identity kept on the host (a client certificate from the key store,
// presented by the proxy) and WebSocket upgrades passing through with injection
// on the upgrade request.
import { execFile, execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { connect as netConnect, type Socket } from 'node:net'
import { connect as tlsConnect, type TLSSocket } from 'node:tls'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Duplex } from 'node:stream'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { WebSocket, WebSocketServer } from 'ws'
import { startEgressProxy, type EgressProxy } from '../src/egress/index.js'
import { EgressRuleSchema } from '../src/egress/rules.js'
import { startTestUpstream, type TestUpstream } from './helpers/egress-test-upstream.js'

const run = promisify(execFile)
const TOKEN = 'mtls-proxy-token-0123456789'
let dir: string
let mtlsUpstream: TestUpstream
let wsUpstream: TestUpstream
let framesUpstream: TestUpstream
const framesReceived: string[] = []
const framesExtensions: Array<string | undefined> = []
let proxy: EgressProxy
const keys = new Map<string, string>()
const upgrades: Array<Record<string, unknown>> = []

/** A masked binary WebSocket frame (client to server), which passes the proxy byte for byte. */
function binaryFrame(text: string): Buffer {
  const payload = Buffer.from(text)
  const mask = Buffer.from([1, 2, 3, 4])
  return Buffer.concat([Buffer.from([0x82, 0x80 | payload.length]), mask, Buffer.from(payload.map((byte, i) => byte ^ (mask[i & 3] ?? 0)))])
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' })
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cp-egress-mtls-'))
  // A client CA and a client certificate (clientAuth), as a Kubernetes API server would demand.
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'cca.key', '-out', 'cca.pem', '-subj', '/CN=test client CA', '-days', '1', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign'])
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=host-held-client'])
  writeFileSync(join(dir, 'ext.cnf'), 'extendedKeyUsage=clientAuth\n')
  openssl(['x509', '-req', '-in', 'client.csr', '-CA', 'cca.pem', '-CAkey', 'cca.key', '-CAcreateserial', '-out', 'client.pem', '-days', '1', '-extfile', 'ext.cnf'])
  keys.set('KUBE_CERT', readFileSync(join(dir, 'client.pem'), 'utf8'))
  keys.set('KUBE_KEY', readFileSync(join(dir, 'client.key'), 'utf8'))
  keys.set('KUBE_TOKEN', 'kube-real-token')
  keys.set('WS_KEY', 'ws-real-key')
  mtlsUpstream = await startTestUpstream(
    dir,
    (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end('{"kind":"Status"}')
    },
    { names: ['kube.example.test', 'kube2.example.test'], clientCaPem: readFileSync(join(dir, 'cca.pem'), 'utf8') },
  )
  wsUpstream = await startTestUpstream(dir, (_req, res) => res.end('no upgrade'), { names: ['ws.example.test'] })
  wsUpstream.server.on('upgrade', (req: { headers: Record<string, unknown> }, socket: Duplex) => {
    upgrades.push(req.headers)
    const accept = createHash('sha1').update(`${String(req.headers['sec-websocket-key'])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64')
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${accept}\r\n\r\n`)
    // After the switch the upstream echoes the bytes: a binary frame must pass the proxy untouched.
    socket.on('data', (chunk: Buffer) => socket.write(chunk))
  })
  // A real WebSocket server (ws) that records each text message and echoes it back.
  framesUpstream = await startTestUpstream(dir, (_req, res) => res.end('no upgrade'), { names: ['frames.example.test'] })
  const wss = new WebSocketServer({ noServer: true })
  framesUpstream.server.on('upgrade', (req: import('node:http').IncomingMessage, socket: Duplex, head: Buffer) => {
    framesExtensions.push(req.headers['sec-websocket-extensions'])
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data: Buffer) => {
        framesReceived.push(data.toString())
        ws.send(`echo ${data.toString()}`)
      })
    })
  })
  const base = { credential: { key: 'KUBE_TOKEN' }, inject: { header: 'authorization', format: 'Bearer {}' }, upstream: `127.0.0.1:${mtlsUpstream.port}`, ca: mtlsUpstream.caFile }
  proxy = await startEgressProxy({
    session: 'mtls-test',
    rules: [
      EgressRuleSchema.parse({ ...base, name: 'kube', hosts: ['kube.example.test'], clientCert: { cert: 'KUBE_CERT', key: 'KUBE_KEY' } }),
      EgressRuleSchema.parse({ ...base, name: 'kube-nocert', hosts: ['kube2.example.test'] }),
      EgressRuleSchema.parse({
        name: 'ws',
        hosts: ['ws.example.test'],
        credential: { key: 'WS_KEY' },
        inject: { header: 'authorization', format: 'Bearer {}' },
        upstream: `127.0.0.1:${wsUpstream.port}`,
        ca: wsUpstream.caFile,
        route: '/ws',
      }),
      EgressRuleSchema.parse({
        name: 'frames',
        hosts: ['frames.example.test'],
        credential: { key: 'WS_KEY' },
        inject: { header: 'authorization', format: 'Bearer {}' },
        upstream: `127.0.0.1:${framesUpstream.port}`,
        ca: framesUpstream.caFile,
        route: '/frames',
      }),
    ],
    grantedRules: () => new Set(['kube', 'kube-nocert', 'ws', 'frames']),
    credentials: { apiKey: (name) => Promise.resolve(keys.get(name) ?? null), accessToken: () => Promise.resolve(null) },
    audit: () => undefined,
    tcp: { host: '127.0.0.1', port: 0 },
    proxyToken: TOKEN,
  })
  writeFileSync(join(dir, 'session-ca.pem'), proxy.caCertPem)
})

afterAll(async () => {
  await proxy.close()
  await mtlsUpstream.close()
  await wsUpstream.close()
  await framesUpstream.close()
  rmSync(dir, { recursive: true, force: true })
})

async function curl(url: string): Promise<number> {
  const result = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '20', '--proxy', `http://credproxy:${TOKEN}@127.0.0.1:${proxy.tcpAddress?.port ?? 0}`, '--cacert', join(dir, 'session-ca.pem'), url]).catch(
    (error: { stdout?: string }) => ({ stdout: error.stdout ?? '0' }),
  )
  return Number(result.stdout)
}

describe('mTLS kept on the host', () => {
  test('the proxy presents the stored client certificate; the client holds none', async () => {
    const from = mtlsUpstream.received.length
    expect(await curl('https://kube.example.test/api/v1/namespaces')).toBe(200)
    const seen = mtlsUpstream.received.slice(from)
    expect(seen[0]?.clientCn).toBe('host-held-client')
    expect(seen[0]?.headers.authorization).toBe('Bearer kube-real-token')
  })

  test('without a client certificate the upstream refuses the handshake: 502, nothing received', async () => {
    const from = mtlsUpstream.received.length
    expect(await curl('https://kube2.example.test/api')).toBe(502)
    expect(mtlsUpstream.received.slice(from)).toHaveLength(0)
  })
})

describe('WebSocket upgrade', () => {
  test('passes through a reverse route with the credential injected on the upgrade request, then binary frames both ways', async () => {
    const placeholder = proxy.placeholders.get('ws') ?? ''
    const echoed = await new Promise<string>((resolve, reject) => {
      const req = httpRequest({
        host: '127.0.0.1',
        port: proxy.tcpAddress?.port ?? 0,
        path: '/ws/socket',
        headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13', authorization: `Bearer ${placeholder}` },
      })
      req.on('upgrade', (res, socket) => {
        if (res.statusCode !== 101) reject(new Error(`status ${res.statusCode ?? 0}`))
        let got = ''
        socket.on('data', (chunk: Buffer) => {
          got += chunk.toString('latin1')
          if (got.length < binaryFrame('hello through the proxy').length) return
          resolve(got)
          socket.destroy()
        })
        socket.write(binaryFrame('hello through the proxy'))
      })
      req.on('response', (res) => reject(new Error(`no upgrade: ${res.statusCode ?? 0}`)))
      req.on('error', reject)
      req.end()
    })
    expect(echoed).toBe(binaryFrame('hello through the proxy').toString('latin1'))
    expect(upgrades.at(-1)?.authorization).toBe('Bearer ws-real-key')
    expect(upgrades.at(-1)?.upgrade).toBe('websocket')
  })

  test('passes through an intercepted CONNECT tunnel, injected on the upgrade request', async () => {
    const tls = await tunnel('ws.example.test')
    const placeholder = proxy.placeholders.get('ws') ?? ''
    const echoed = await new Promise<string>((resolve, reject) => {
      const req = httpRequest({
        createConnection: () => tls,
        host: 'ws.example.test',
        path: '/socket',
        headers: { host: 'ws.example.test', connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13', authorization: `Bearer ${placeholder}` },
      })
      req.on('upgrade', (_res, socket) => {
        let got = ''
        socket.on('data', (chunk: Buffer) => {
          got += chunk.toString('latin1')
          if (got.length < binaryFrame('frame bytes').length) return
          resolve(got)
          socket.destroy()
        })
        socket.write(binaryFrame('frame bytes'))
      })
      req.on('response', (res) => reject(new Error(`no upgrade: ${res.statusCode ?? 0}`)))
      req.on('error', reject)
      req.end()
    })
    expect(echoed).toBe(binaryFrame('frame bytes').toString('latin1'))
    expect(upgrades.at(-1)?.authorization).toBe('Bearer ws-real-key')
  })
})

/** CONNECT through the proxy, then TLS inside the tunnel with `servername` (default: the target). */
async function tunnel(target: string, servername = target, anyName = false): Promise<TLSSocket> {
  const socket: Socket = netConnect({ host: '127.0.0.1', port: proxy.tcpAddress?.port ?? 0 })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => socket.write(`CONNECT ${target}:443 HTTP/1.1\r\nproxy-authorization: Basic ${Buffer.from(`credproxy:${TOKEN}`).toString('base64')}\r\n\r\n`))
    socket.once('data', (chunk: Buffer) => (chunk.toString().startsWith('HTTP/1.1 200') ? resolve() : reject(new Error(chunk.toString()))))
    socket.once('error', reject)
  })
  const tls = tlsConnect({ socket, servername, ca: proxy.caCertPem, ...(anyName ? { checkServerIdentity: () => undefined } : {}) })
  await new Promise<void>((resolve, reject) => {
    tls.once('secureConnect', resolve)
    tls.once('error', reject)
  })
  return tls
}

describe('WebSocket messages', () => {
  function open(): Promise<WebSocket> {
    const ws = new WebSocket(`ws://127.0.0.1:${proxy.tcpAddress?.port ?? 0}/frames/live`, {
      headers: { authorization: `Bearer ${proxy.placeholders.get('frames') ?? ''}` },
      perMessageDeflate: true,
    })
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(ws))
      ws.once('error', reject)
    })
  }

  test('a placeholder in a text message reaches the upstream as the secret; the echoed secret comes back as the placeholder', async () => {
    const placeholder = proxy.placeholders.get('frames') ?? ''
    const ws = await open()
    const reply = new Promise<string>((resolve) => ws.once('message', (data: Buffer) => resolve(data.toString())))
    ws.send(JSON.stringify({ type: 'auth', token: placeholder }))
    expect(await reply).toBe(`echo {"type":"auth","token":"${placeholder}"}`)
    expect(framesReceived.at(-1)).toBe('{"type":"auth","token":"ws-real-key"}')
    // Compression was switched off so text frames can be read and rewritten.
    expect(framesExtensions.at(-1)).toBeUndefined()
    ws.close()
  })

  test("another rule's placeholder in a message closes the connection and never reaches the upstream", async () => {
    const ws = await open()
    const before = framesReceived.length
    const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()))
    ws.send(`steal ${proxy.placeholders.get('kube') ?? ''}`)
    await closed
    expect(framesReceived.length).toBe(before)
  })

  test('binary and large text messages pass (streamed or rewritten whole)', async () => {
    const ws = await open()
    const big = 'z'.repeat(200_000)
    const replies: string[] = []
    const done = new Promise<void>((resolve) =>
      ws.on('message', (data: Buffer) => {
        replies.push(data.toString())
        if (replies.length === 2) resolve()
      }),
    )
    ws.send(Buffer.from('binary-bytes'))
    ws.send(big)
    await done
    expect(replies).toEqual(['echo binary-bytes', `echo ${big}`])
    ws.close()
  })
})

describe('the CONNECT target decides', () => {
  test('a TLS client naming another host in SNI than the CONNECT target gets no handshake', async () => {
    // The client accepts any name here, so only the proxy's own SNI check can refuse.
    await expect(tunnel('ws.example.test', 'kube.example.test', true)).rejects.toThrow()
    const ok = await tunnel('ws.example.test', 'ws.example.test', true)
    ok.destroy()
  })
})
