// HTTP/2 where the upstream requires it (gRPC): the proxy offers h2 to the client
// only when the upstream speaks it, injects into the h2 request, keeps `te: trailers`
// and relays trailers (scrubbed of the secret like any header).
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect as http2Connect, constants as http2Constants, createSecureServer, type Http2SecureServer, type IncomingHttpHeaders } from 'node:http2'
import { connect as netConnect, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { SessionCa } from '../src/egress/ca.js'
import { startEgressProxy, type EgressProxy } from '../src/egress/index.js'
import { EgressRuleSchema } from '../src/egress/rules.js'

const run = promisify(execFile)
const TOKEN = 'h2-proxy-token-0123456789'
const SECRET = 'grpc-real-secret'
let dir: string
let upstream: Http2SecureServer
let proxy: EgressProxy
const seen: IncomingHttpHeaders[] = []

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cp-egress-h2-'))
  const upstreamCa = await SessionCa.create('h2-upstream')
  const leaf = await upstreamCa.leafFor('grpc.example.test')
  writeFileSync(join(dir, 'upstream-ca.pem'), upstreamCa.certPem)
  // HTTP/2 only, like a gRPC server.
  upstream = createSecureServer({ cert: leaf.certPem, key: leaf.keyPem, allowHTTP1: false })
  upstream.on('stream', (stream, headers) => {
    seen.push(headers)
    const chunks: Buffer[] = []
    stream.on('data', (chunk: Buffer) => chunks.push(chunk))
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true })
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'x-echo': String(headers.authorization ?? '') }))
      stream.end(Buffer.concat([Buffer.from('echo:'), ...chunks]))
    })
  })
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve))
  proxy = await startEgressProxy({
    session: 'h2-test',
    rules: [
      EgressRuleSchema.parse({
        name: 'grpc',
        hosts: ['grpc.example.test'],
        credential: { key: 'GRPC_KEY' },
        inject: { header: 'authorization', format: 'Bearer {}' },
        upstream: `127.0.0.1:${(upstream.address() as AddressInfo).port}`,
        ca: join(dir, 'upstream-ca.pem'),
      }),
    ],
    grantedRules: () => new Set(['grpc']),
    credentials: { apiKey: (name) => Promise.resolve(name === 'GRPC_KEY' ? SECRET : null), accessToken: () => Promise.resolve(null) },
    audit: () => undefined,
    tcp: { host: '127.0.0.1', port: 0 },
    proxyToken: TOKEN,
  })
  writeFileSync(join(dir, 'session-ca.pem'), proxy.caCertPem)
})

afterAll(async () => {
  await proxy.close()
  upstream.close()
  rmSync(dir, { recursive: true, force: true })
})

/** A CONNECT tunnel through the proxy, then HTTP/2 over TLS (ALPN h2) inside it, as a gRPC client does. */
async function h2Session(): Promise<import('node:http2').ClientHttp2Session> {
  const socket = netConnect({ host: '127.0.0.1', port: proxy.tcpAddress?.port ?? 0 })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => socket.write(`CONNECT grpc.example.test:443 HTTP/1.1\r\nproxy-authorization: Basic ${Buffer.from(`credproxy:${TOKEN}`).toString('base64')}\r\n\r\n`))
    socket.once('data', () => resolve())
    socket.once('error', reject)
  })
  const tls = tlsConnect({ socket, servername: 'grpc.example.test', ca: proxy.caCertPem, ALPNProtocols: ['h2'] })
  await new Promise<void>((resolve, reject) => {
    tls.once('secureConnect', resolve)
    tls.once('error', reject)
  })
  return http2Connect('https://grpc.example.test', { createConnection: () => tls })
}

async function grpcCall(body: Buffer, authorization: string): Promise<{ headers: IncomingHttpHeaders; trailers: IncomingHttpHeaders; data: string; alpn: string | false | null }> {
  const socket = netConnect({ host: '127.0.0.1', port: proxy.tcpAddress?.port ?? 0 })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => socket.write(`CONNECT grpc.example.test:443 HTTP/1.1\r\nhost: grpc.example.test:443\r\nproxy-authorization: Basic ${Buffer.from(`credproxy:${TOKEN}`).toString('base64')}\r\n\r\n`))
    socket.once('data', (chunk: Buffer) => (chunk.toString().startsWith('HTTP/1.1 200') ? resolve() : reject(new Error(chunk.toString()))))
    socket.once('error', reject)
  })
  const tls = tlsConnect({ socket, servername: 'grpc.example.test', ca: proxy.caCertPem, ALPNProtocols: ['h2'] })
  await new Promise<void>((resolve, reject) => {
    tls.once('secureConnect', resolve)
    tls.once('error', reject)
  })
  const session = http2Connect('https://grpc.example.test', { createConnection: () => tls })
  try {
    return await new Promise((resolve, reject) => {
      const stream = session.request({ ':method': 'POST', ':path': '/pkg.Service/Call', 'content-type': 'application/grpc', te: 'trailers', authorization })
      let headers: IncomingHttpHeaders = {}
      let trailers: IncomingHttpHeaders = {}
      const chunks: Buffer[] = []
      stream.on('response', (received) => {
        headers = received
      })
      stream.on('trailers', (received) => {
        trailers = received
      })
      stream.on('data', (chunk: Buffer) => chunks.push(chunk))
      stream.on('end', () => resolve({ headers, trailers, data: Buffer.concat(chunks).toString(), alpn: tls.alpnProtocol }))
      stream.on('error', reject)
      stream.end(body)
    })
  } finally {
    session.close()
  }
}

describe('HTTP/2 (gRPC) through CONNECT', () => {
  test('h2 end to end: credential injected, te: trailers kept, trailers relayed with the secret scrubbed', async () => {
    const placeholder = proxy.placeholders.get('grpc') ?? ''
    const result = await grpcCall(Buffer.from('payload'), `Bearer ${placeholder}`)
    expect(result.alpn).toBe('h2')
    expect(result.headers[':status']).toBe(200)
    expect(result.data).toBe('echo:payload')
    expect(result.trailers['grpc-status']).toBe('0')
    expect(result.trailers['x-echo']).toBe(`Bearer ${placeholder}`)
    const last = seen.at(-1)
    expect(last?.authorization).toBe(`Bearer ${SECRET}`)
    expect(last?.te).toBe('trailers')
    expect(last?.[':authority']).toBe('grpc.example.test')
  })

  test('curl negotiates h2 with the proxy for an h2-only upstream and gets the answer', async () => {
    const { stdout } = await run('curl', [
      '-sS', '--http2', '--max-time', '20', '-w', '\n%{http_version} %{http_code}',
      '--proxy', `http://credproxy:${TOKEN}@127.0.0.1:${proxy.tcpAddress?.port ?? 0}`, '--cacert', join(dir, 'session-ca.pem'),
      '--data-binary', 'from-curl', 'https://grpc.example.test/x',
    ])
    expect(stdout.trim().split('\n').at(-1)).toBe('2 200')
    expect(stdout).toContain('echo:from-curl')
    expect(seen.at(-1)?.authorization).toBe(`Bearer ${SECRET}`)
  })

  test('a host header that differs from :authority is refused 403 and nothing reaches the upstream; a matching one is dropped', async () => {
    const session = await h2Session()
    const call = (host: string): Promise<number> =>
      new Promise((resolve, reject) => {
        const stream = session.request({ ':method': 'GET', ':path': '/whoami', ':authority': 'grpc.example.test', host })
        stream.on('response', (headers) => resolve(Number(headers[':status'])))
        stream.on('error', reject)
        stream.resume()
        stream.end()
      })
    try {
      const before = seen.length
      expect(await call('evil.example.org')).toBe(403)
      expect(seen.length).toBe(before)
      expect(await call('grpc.example.test')).toBe(200)
      expect(seen.length).toBe(before + 1)
      expect(seen.at(-1)?.host).toBeUndefined()
      expect(seen.at(-1)?.[':authority']).toBe('grpc.example.test')
    } finally {
      session.close()
    }
  })

  test('a client resetting a stream mid-body, then dropping the connection, does not stop the proxy', async () => {
    const session = await h2Session()
    const stream = session.request({ ':method': 'POST', ':path': '/pkg.Service/Upload', 'content-type': 'application/grpc', te: 'trailers' })
    stream.on('error', () => undefined)
    stream.write(Buffer.alloc(50_000))
    await new Promise((resolve) => setTimeout(resolve, 50))
    stream.close(http2Constants.NGHTTP2_CANCEL)
    await new Promise((resolve) => setTimeout(resolve, 50))
    session.destroy()
    await new Promise((resolve) => setTimeout(resolve, 50))
    const result = await grpcCall(Buffer.from('after'), `Bearer ${proxy.placeholders.get('grpc') ?? ''}`)
    expect(result.data).toBe('echo:after')
  })
})
