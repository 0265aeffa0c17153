// The egress proxy end to end with real TLS: curl through CONNECT (the session CA
// trusted, the upstream pinned to a local HTTPS server with its own test CA), a
// Node client on a reverse route, and every fail-closed case of the issue.
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { connect as netConnect } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { startEgressProxy, type EgressAuditEvent, type EgressProxy } from '../src/egress/index.js'
import { EgressRuleSchema, PLACEHOLDER_MARKER, type EgressRule, type EgressRuleInput } from '../src/egress/rules.js'
import { startTestUpstream, type TestUpstream } from './helpers/egress-test-upstream.js'

const run = promisify(execFile)
const TOKEN = 'test-proxy-token-0123456789'
const SECRET = 'real-secret-value-4f1d2c'
const NAMES = ['api.example.test', 'other.example.test', 'basic.example.test', 'keepuser.example.test', 'query.example.test', 'oauth.example.test', 'stale.example.test', 'limited.example.test', 'wrongca.example.test', 'localhost']

let dir: string
let upstream: TestUpstream
let proxy: EgressProxy
let caFile: string
const audit: EgressAuditEvent[] = []
const granted = new Set(['example', 'other', 'basic', 'keepuser', 'query', 'oauth', 'stale', 'limited', 'wrongca', 'private', 'missing', 'broken'])
const keys = new Map<string, string>([
  ['EXAMPLE_KEY', SECRET],
  ['OTHER_KEY', 'other-secret-value'],
])
const oauth = { current: 'tok-1', refreshes: 0, afterRefresh: 'tok-2', accept: 'tok-2', refreshFails: false }
const sse = { release: (): void => undefined, ended: false }
const staleRequestsPerSocket = new WeakMap<object, number>()

function rule(input: Partial<EgressRuleInput> & { name: string }): EgressRule {
  return EgressRuleSchema.parse({ hosts: ['api.example.test'], credential: { key: 'EXAMPLE_KEY' }, inject: { header: 'authorization', format: 'Bearer {}' }, ...input })
}

async function curl(args: string[]): Promise<{ status: number; body: string; stderr: string }> {
  const result = await run('curl', ['-sS', '--max-time', '20', '-w', '\n%{http_code}', ...args]).catch(
    (error: { stdout?: string; stderr?: string }) => ({ stdout: error.stdout ?? '', stderr: error.stderr ?? '' }),
  )
  const at = result.stdout.lastIndexOf('\n')
  return { status: Number(result.stdout.slice(at + 1)), body: result.stdout.slice(0, at), stderr: result.stderr }
}

function viaProxy(): string[] {
  return ['--proxy', `http://credproxy:${TOKEN}@127.0.0.1:${proxy.tcpAddress?.port ?? 0}`, '--cacert', caFile]
}

function placeholder(name = 'example'): string {
  return proxy.placeholders.get(name) ?? ''
}

/** A plain HTTP request to the proxy's TCP listener (reverse routes, absolute URLs). */
function proxyRequest(
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: string; socketPath?: string } = {},
): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        ...(options.socketPath === undefined ? { host: '127.0.0.1', port: proxy.tcpAddress?.port ?? 0 } : { socketPath: options.socketPath }),
        path,
        method: options.method ?? 'GET',
        headers: options.headers ?? {},
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }))
      },
    )
    req.on('error', reject)
    req.end(options.body)
  })
}

function received(from: number): TestUpstream['received'] {
  return upstream.received.slice(from)
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cp-egress-'))
  upstream = await startTestUpstream(
    dir,
    (req, res, body) => {
      const url = req.url ?? '/'
      if (url.startsWith('/echo')) {
        // An upstream that echoes the credential back (a debug endpoint).
        res.writeHead(200, { 'content-type': 'text/plain', 'x-echo': String(req.headers.authorization ?? '') })
        res.end(`auth=${String(req.headers.authorization ?? '')} url=${url} body=${body.toString()}`)
        return
      }
      if (url.startsWith('/sse')) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
        res.write('data: one\n\n')
        // The second event (and the end) wait until the client has seen the first, or 5 s.
        const timer = setTimeout(() => sse.release(), 5_000)
        sse.release = () => {
          clearTimeout(timer)
          sse.ended = true
          res.end('data: two\n\n')
        }
        return
      }
      if (req.headers.host === 'oauth.example.test') {
        const ok = req.headers.authorization === `Bearer ${oauth.accept}`
        res.writeHead(ok ? 200 : 401, { 'content-type': 'text/plain' })
        res.end(ok ? `ok body=${body.toString()}` : 'expired')
        return
      }
      if (req.headers.host === 'stale.example.test') {
        // Every second request on a connection finds it closed without an answer: a stale keep-alive socket.
        const count = (staleRequestsPerSocket.get(req.socket) ?? 0) + 1
        staleRequestsPerSocket.set(req.socket, count)
        if (count >= 2) {
          req.socket.destroy()
          return
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ ok: true, url, body: body.toString() }))
    },
    { names: NAMES },
  )
  const pin = { upstream: `127.0.0.1:${upstream.port}`, ca: upstream.caFile }
  proxy = await startEgressProxy({
    session: 'egress-test',
    rules: [
      rule({ name: 'example', ...pin, route: '/example' }),
      rule({ name: 'other', hosts: ['other.example.test'], credential: { key: 'OTHER_KEY' }, ...pin }),
      rule({ name: 'basic', hosts: ['basic.example.test'], inject: { basic: { user: 'x-access-token' } }, ...pin }),
      rule({ name: 'keepuser', hosts: ['keepuser.example.test'], inject: { basic: {} }, ...pin }),
      rule({ name: 'query', hosts: ['query.example.test'], inject: { query: 'api_key' }, ...pin }),
      rule({ name: 'oauth', hosts: ['oauth.example.test'], credential: { oauth: 'testprov' }, ...pin, route: '/oauth' }),
      rule({ name: 'stale', hosts: ['stale.example.test'], ...pin }),
      rule({ name: 'limited', hosts: ['limited.example.test'], ...pin, rateLimit: { perSecond: 0.01, burst: 1 } }),
      // Pinned to the same upstream but without its CA: verification must fail and nothing is sent.
      rule({ name: 'wrongca', hosts: ['wrongca.example.test'], upstream: `127.0.0.1:${upstream.port}` }),
      rule({ name: 'missing', hosts: ['missing.example.test'], credential: { key: 'NOT_STORED' }, ...pin, route: '/missing' }),
      rule({ name: 'broken', hosts: ['broken.example.test'], credential: { key: 'STORE_FAILS' }, ...pin, route: '/broken' }),
      // No pinned upstream: the name resolves to loopback and the guard refuses it.
      rule({ name: 'private', hosts: ['localhost'], ca: upstream.caFile }),
    ],
    grantedRules: () => granted,
    credentials: {
      apiKey: (name) => (name === 'STORE_FAILS' ? Promise.reject(new Error('keyring locked')) : Promise.resolve(keys.get(name) ?? null)),
      accessToken: (_provider, _bucket, options) => {
        if (options?.forceRefresh === true && oauth.refreshFails) {
          oauth.refreshes += 1
          return Promise.reject(new Error('REFRESH_FAILED'))
        }
        if (options?.forceRefresh === true) {
          oauth.refreshes += 1
          oauth.current = oauth.afterRefresh
        }
        return Promise.resolve(oauth.current)
      },
    },
    audit: (event) => audit.push(event),
    socketPath: join(dir, 'egress.sock'),
    tcp: { host: '127.0.0.1', port: 0 },
    proxyToken: TOKEN,
    allowedHosts: ['allowed.example.test', 'localhost', '127.0.0.1'],
  })
  caFile = join(dir, 'session-ca.pem')
  writeFileSync(caFile, proxy.caCertPem)
})

afterAll(async () => {
  await proxy.close()
  await upstream.close()
  rmSync(dir, { recursive: true, force: true })
})

describe('injection', () => {
  test('curl through CONNECT: the upstream receives the real key; the client sent only the placeholder', async () => {
    const from = upstream.received.length
    const result = await curl([...viaProxy(), '-H', `authorization: Bearer ${placeholder()}`, 'https://api.example.test/v1/thing'])
    expect(result.status).toBe(200)
    const seen = received(from)
    expect(seen).toHaveLength(1)
    expect(seen[0]?.headers.authorization).toBe(`Bearer ${SECRET}`)
    expect(seen[0]?.servername).toBe('api.example.test')
    expect(seen[0]?.headers.host).toBe('api.example.test')
    expect(seen[0]?.headers['proxy-authorization']).toBeUndefined()
  })

  test('injection is preemptive: a request without any credential gets one on a rule host', async () => {
    const from = upstream.received.length
    const result = await curl([...viaProxy(), 'https://api.example.test/no-auth'])
    expect(result.status).toBe(200)
    expect(received(from)[0]?.headers.authorization).toBe(`Bearer ${SECRET}`)
  })

  test('Basic with a fixed user: x-access-token:<secret>, whatever the client sent (git)', async () => {
    const from = upstream.received.length
    const result = await curl([...viaProxy(), '-u', `someone:${placeholder('basic')}`, 'https://basic.example.test/repo.git/info/refs'])
    expect(result.status).toBe(200)
    expect(received(from)[0]?.headers.authorization).toBe(`Basic ${Buffer.from(`x-access-token:${SECRET}`).toString('base64')}`)
  })

  test('Basic without a fixed user: the placeholder is decoded, swapped and re-encoded, the user kept', async () => {
    const from = upstream.received.length
    const result = await curl([...viaProxy(), '-u', `alice:${placeholder('keepuser')}`, 'https://keepuser.example.test/token'])
    expect(result.status).toBe(200)
    expect(received(from)[0]?.headers.authorization).toBe(`Basic ${Buffer.from(`alice:${SECRET}`).toString('base64')}`)
  })

  test('query injection, and a placeholder in the path and query swapped on its own host', async () => {
    const from = upstream.received.length
    const p = placeholder('query')
    const result = await curl([...viaProxy(), `https://query.example.test/keys/${p}/x?other=${p}&q=1`])
    expect(result.status).toBe(200)
    const url = received(from)[0]?.url ?? ''
    expect(url.startsWith(`/keys/${SECRET}/x?`)).toBe(true)
    const params = new URLSearchParams(url.split('?')[1])
    expect(params.get('other')).toBe(SECRET)
    expect(params.get('api_key')).toBe(SECRET)
    expect(url).not.toContain(PLACEHOLDER_MARKER)
  })

  test('a Node client on the reverse route: placeholder in, real key upstream', async () => {
    const from = upstream.received.length
    const result = await proxyRequest('/example/v1/messages?x=1', { method: 'POST', headers: { 'x-api-key': placeholder(), 'content-type': 'application/json' }, body: '{"a":1}' })
    expect(result.status).toBe(200)
    const seen = received(from)[0]
    expect(seen?.url).toBe('/v1/messages?x=1')
    expect(seen?.headers.authorization).toBe(`Bearer ${SECRET}`)
    expect(seen?.headers['x-api-key']).toBe(SECRET)
    expect(seen?.body.toString()).toBe('{"a":1}')
  })

  test('the reverse route on the Unix socket needs no token', async () => {
    const from = upstream.received.length
    const result = await proxyRequest('/example/unix', { socketPath: join(dir, 'egress.sock') })
    expect(result.status).toBe(200)
    expect(received(from)[0]?.headers.authorization).toBe(`Bearer ${SECRET}`)
  })

  test('rotation reaches the running proxy on the next request', async () => {
    const from = upstream.received.length
    keys.set('EXAMPLE_KEY', 'rotated-secret-value')
    try {
      const result = await proxyRequest('/example/after-rotation', { headers: { 'x-api-key': placeholder() } })
      expect(result.status).toBe(200)
      expect(received(from)[0]?.headers.authorization).toBe('Bearer rotated-secret-value')
    } finally {
      keys.set('EXAMPLE_KEY', SECRET)
    }
  })

  test('OAuth: an upstream 401 triggers exactly one refresh and one resend (body replayed)', async () => {
    oauth.current = 'tok-1'
    oauth.refreshes = 0
    const from = upstream.received.length
    const result = await proxyRequest('/oauth/call', { method: 'POST', headers: { authorization: `Bearer ${placeholder('oauth')}` }, body: 'payload' })
    expect(result.status).toBe(200)
    expect(result.body).toBe('ok body=payload')
    expect(oauth.refreshes).toBe(1)
    const seen = received(from)
    expect(seen.map((request) => request.headers.authorization)).toEqual(['Bearer tok-1', 'Bearer tok-2'])
  })

  test('OAuth: a 401 after the refresh is passed on, with no second refresh', async () => {
    Object.assign(oauth, { current: 'tok-1', afterRefresh: 'tok-3', accept: 'tok-never', refreshes: 0 })
    try {
      const from = upstream.received.length
      const result = await proxyRequest('/oauth/call', { headers: { authorization: `Bearer ${placeholder('oauth')}` } })
      expect(result.status).toBe(401)
      expect(oauth.refreshes).toBe(1)
      expect(received(from)).toHaveLength(2)
    } finally {
      Object.assign(oauth, { afterRefresh: 'tok-2', accept: 'tok-2' })
    }
  })

  test('OAuth: a refresh that fails on the host leaves the upstream 401 as the answer', async () => {
    Object.assign(oauth, { current: 'tok-1', refreshes: 0, refreshFails: true })
    try {
      const result = await proxyRequest('/oauth/call', { headers: { authorization: `Bearer ${placeholder('oauth')}` } })
      expect(result.status).toBe(401)
      expect(result.body).toBe('expired')
      expect(oauth.refreshes).toBe(1)
    } finally {
      oauth.refreshFails = false
    }
  })

  test('a credential not stored on the host: 502 naming the key and the command, nothing forwarded', async () => {
    const from = upstream.received.length
    const result = await proxyRequest('/missing/x', { headers: { authorization: `Bearer ${placeholder('missing')}` } })
    expect(result.status).toBe(502)
    expect(result.body).toContain('credential-missing')
    expect(result.body).toContain('credproxy key set NOT_STORED')
    expect(received(from)).toHaveLength(0)
  })

  test('a host store that fails: 502 credential-unavailable, no detail leaked', async () => {
    const result = await proxyRequest('/broken/x', { headers: { authorization: `Bearer ${placeholder('broken')}` } })
    expect(result.status).toBe(502)
    expect(result.body).toContain('credential-unavailable')
    expect(result.body).not.toContain('keyring locked')
  })

  test('a stale pooled connection is replaced transparently for a replayable request', async () => {
    const from = upstream.received.length
    const first = await curl([...viaProxy(), 'https://stale.example.test/one'])
    const second = await curl([...viaProxy(), 'https://stale.example.test/two'])
    expect(first.status).toBe(200)
    expect(second.status).toBe(200)
    // The upstream saw the second request twice: once on the stale connection (dropped), once on a new one.
    expect(received(from).map((request) => request.url)).toEqual(['/one', '/two', '/two'])
  })

  test('Expect: 100-continue is forwarded and the body arrives', async () => {
    const from = upstream.received.length
    const body = 'x'.repeat(200_000)
    const file = join(dir, 'body.txt')
    writeFileSync(file, body)
    const result = await curl([...viaProxy(), '-H', 'Expect: 100-continue', '--data-binary', `@${file}`, 'https://api.example.test/upload'])
    expect(result.status).toBe(200)
    expect(received(from)[0]?.body.length).toBe(body.length)
  })
})

describe('clients that go away', () => {
  function connectTunnel(): Promise<import('node:net').Socket> {
    const socket = netConnect({ host: '127.0.0.1', port: proxy.tcpAddress?.port ?? 0 })
    return new Promise((resolve, reject) => {
      socket.once('connect', () => socket.write(`CONNECT api.example.test:443 HTTP/1.1\r\nproxy-authorization: Basic ${Buffer.from(`credproxy:${TOKEN}`).toString('base64')}\r\n\r\n`))
      socket.once('data', () => resolve(socket))
      socket.once('error', reject)
    })
  }

  test('resets before TLS, mid-upload inside a tunnel and mid-upload on a route never stop the proxy', async () => {
    ;(await connectTunnel()).resetAndDestroy()
    const inner = await connectTunnel()
    const tls = tlsConnect({ socket: inner, servername: 'api.example.test', ca: proxy.caCertPem })
    await new Promise((resolve) => tls.once('secureConnect', resolve))
    tls.write(`POST /upload HTTP/1.1\r\nhost: api.example.test\r\ncontent-length: 1000000\r\n\r\n${'x'.repeat(100_000)}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
    inner.resetAndDestroy()
    const routed = netConnect({ host: '127.0.0.1', port: proxy.tcpAddress?.port ?? 0 })
    await new Promise((resolve) => routed.once('connect', resolve))
    routed.write(`POST /example/upload HTTP/1.1\r\nhost: x\r\nx-api-key: ${placeholder()}\r\ncontent-length: 1000000\r\n\r\n${'y'.repeat(100_000)}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
    routed.resetAndDestroy()
    await new Promise((resolve) => setTimeout(resolve, 100))
    const after = await curl([...viaProxy(), 'https://api.example.test/still-alive'])
    expect(after.status).toBe(200)
  })
})

describe('internal failures', () => {
  test('a failure inside the proxy is a 502 and an audit line, and the next request is served', async () => {
    const has = granted.has.bind(granted)
    granted.has = () => {
      throw new Error('grant store broken')
    }
    try {
      const result = await proxyRequest('/example/x', { headers: { 'x-api-key': placeholder() } })
      expect(result.status).toBe(502)
      expect(result.body).not.toContain('grant store broken')
      expect(audit.some((event) => event.reason === 'internal-error' && event.status === 502)).toBe(true)
    } finally {
      granted.has = has
    }
    expect((await proxyRequest('/example/x', { headers: { 'x-api-key': placeholder() } })).status).toBe(200)
  })
})

describe('plain tunnels', () => {
  test('an allowed host without a rule is tunnelled untouched: no interception, no injection, audited at close', async () => {
    const from = upstream.received.length
    // The upstream's own certificate (not the session CA's) reaches curl: -k because it names api.example.test, not the IP.
    const result = await curl(['--proxy', `http://credproxy:${TOKEN}@127.0.0.1:${proxy.tcpAddress?.port ?? 0}`, '-k', '-H', 'authorization: Bearer client-own', `https://127.0.0.1:${upstream.port}/tunnel`])
    expect(result.status).toBe(200)
    expect(received(from)[0]?.headers.authorization).toBe('Bearer client-own')
    await expect.poll(() => audit.find((event) => event.method === 'CONNECT' && event.host === '127.0.0.1' && event.status === 200)).toBeDefined()
    const line = audit.find((event) => event.method === 'CONNECT' && event.host === '127.0.0.1' && event.status === 200)
    expect(line?.injected).toBe(false)
    expect(line?.bytesOut).toBeGreaterThan(0)
  })
})

describe('response hygiene', () => {
  test('an upstream echoing the secret: the client sees the placeholder in headers and body', async () => {
    const result = await proxyRequest('/example/echo', { headers: { 'x-api-key': placeholder() } })
    expect(result.status).toBe(200)
    expect(result.body).toContain(`auth=Bearer ${placeholder()}`)
    expect(result.body).not.toContain(SECRET)
    expect(result.headers['x-echo']).toBe(`Bearer ${placeholder()}`)
  })

  test('an echo of the injected Basic credentials comes back as Basic of the placeholder, never of the secret', async () => {
    const result = await curl([...viaProxy(), 'https://basic.example.test/echo'])
    expect(result.status).toBe(200)
    const sent = Buffer.from(`x-access-token:${SECRET}`).toString('base64')
    expect(result.body).not.toContain(sent)
    expect(result.body).toContain(`auth=Basic ${Buffer.from(`x-access-token:${placeholder('basic')}`).toString('base64')}`)
  })

  test('the client cannot choose a compressed echo: an injected request asks the upstream for identity', async () => {
    const from = upstream.received.length
    const result = await proxyRequest('/example/echo', { headers: { 'x-api-key': placeholder(), 'accept-encoding': 'gzip, br' } })
    expect(result.status).toBe(200)
    expect(received(from)[0]?.headers['accept-encoding']).toBe('identity')
    expect(result.body).not.toContain(SECRET)
  })

  test('an upgrade request the upstream does not switch: the echo is scrubbed, framed and the connection closed', async () => {
    // Raw bytes, so the test sees the framing the client gets (hop-by-hop headers, chunked over a de-chunked body).
    const { text, closedByProxy } = await new Promise<{ text: string; closedByProxy: boolean }>((resolve) => {
      const socket = netConnect(join(dir, 'egress.sock'))
      let buffer = ''
      const timer = setTimeout(() => {
        socket.destroy()
        resolve({ text: buffer, closedByProxy: false })
      }, 5_000)
      socket.on('data', (chunk: Buffer) => (buffer += chunk.toString()))
      socket.on('close', () => {
        clearTimeout(timer)
        resolve({ text: buffer, closedByProxy: true })
      })
      socket.write('GET /example/echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n')
    })
    expect(text).not.toContain(SECRET)
    expect(text).toContain(`auth=Bearer ${placeholder()}`)
    expect(text.toLowerCase()).toContain(`x-echo: bearer ${placeholder().toLowerCase()}`)
    const at = text.indexOf('\r\n\r\n')
    const head = text.slice(0, at).toLowerCase()
    const body = text.slice(at + 4)
    expect(head).not.toContain('keep-alive')
    expect(head).toContain('connection: close')
    // The framing announced must match the bytes sent: an exact Content-Length or well-formed chunks.
    if (head.includes('transfer-encoding: chunked')) {
      let rest = body
      let decoded = ''
      for (;;) {
        const size = Number.parseInt(rest.slice(0, rest.indexOf('\r\n')), 16)
        rest = rest.slice(rest.indexOf('\r\n') + 2)
        if (size === 0) break
        decoded += rest.slice(0, size)
        expect(rest.slice(size, size + 2)).toBe('\r\n')
        rest = rest.slice(size + 2)
      }
      expect(decoded).toContain(`auth=Bearer ${placeholder()}`)
      expect(rest).toBe('\r\n')
    } else {
      expect(Number(/content-length: (\d+)/.exec(head)?.[1])).toBe(Buffer.byteLength(body))
    }
    expect(closedByProxy).toBe(true)
  })
})

describe('streaming', () => {
  test('SSE: the first event reaches the client before the upstream finishes the stream', async () => {
    sse.ended = false
    const order: string[] = []
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: proxy.tcpAddress?.port ?? 0, path: '/example/sse', headers: { 'x-api-key': placeholder() }, agent: false }, (res) => {
        res.on('data', (chunk: Buffer) => {
          const text = chunk.toString()
          if (text.includes('one')) {
            order.push(sse.ended ? 'one-after-end' : 'one-before-end')
            sse.release()
          }
          if (text.includes('two')) order.push('two')
        })
        res.on('end', () => resolve())
      })
      req.on('error', reject)
      req.end()
    })
    expect(order).toEqual(['one-before-end', 'two'])
  })
})

describe('fail closed', () => {
  const refusals = (reason: string): EgressAuditEvent[] => audit.filter((event) => event.reason === reason)

  test("a placeholder sent to another rule's host (raw header) is refused 403 and never forwarded", async () => {
    const from = upstream.received.length
    const result = await curl([...viaProxy(), '-H', `x-token: ${placeholder('example')}`, 'https://other.example.test/steal'])
    expect(result.status).toBe(403)
    expect(received(from)).toHaveLength(0)
    expect(refusals('foreign-placeholder-in-header').length).toBeGreaterThan(0)
  })

  test('... percent-encoded in the query', async () => {
    const from = upstream.received.length
    const encoded = [...placeholder('example')].map((char) => `%${char.charCodeAt(0).toString(16)}`).join('')
    const result = await curl([...viaProxy(), `https://other.example.test/steal?k=${encoded}`])
    expect(result.status).toBe(403)
    expect(received(from)).toHaveLength(0)
  })

  test('... inside Basic credentials', async () => {
    const from = upstream.received.length
    const result = await curl([...viaProxy(), '-u', `x:${placeholder('example')}`, 'https://other.example.test/steal'])
    expect(result.status).toBe(403)
    expect(received(from)).toHaveLength(0)
    expect(refusals('foreign-placeholder-in-basic').length).toBeGreaterThan(0)
  })

  test('... in the path, to an allowed host without a rule (plain HTTP)', async () => {
    const result = await curl(['--proxy', `http://credproxy:${TOKEN}@127.0.0.1:${proxy.tcpAddress?.port ?? 0}`, `http://allowed.example.test/x/${placeholder()}`])
    expect(result.status).toBe(403)
  })

  test('an unknown placeholder-looking value is refused', async () => {
    const from = upstream.received.length
    const result = await curl([...viaProxy(), '-H', `authorization: Bearer ${PLACEHOLDER_MARKER}${'Ab3'.repeat(10)}`, 'https://api.example.test/x'])
    expect(result.status).toBe(403)
    expect(received(from)).toHaveLength(0)
    expect(refusals('unknown-placeholder-in-header').length).toBeGreaterThan(0)
  })

  test('TRACE is refused (it would echo the injected header)', async () => {
    const from = upstream.received.length
    const result = await curl([...viaProxy(), '-X', 'TRACE', 'https://api.example.test/x'])
    expect(result.status).toBe(405)
    expect(received(from)).toHaveLength(0)
  })

  test('a host with no rule and not allowed: CONNECT refused and audited', async () => {
    const result = await curl([...viaProxy(), 'https://evil.example.test/'])
    expect(result.status).not.toBe(200)
    expect(result.stderr).toMatch(/403|CONNECT/)
    expect(audit.some((event) => event.method === 'CONNECT' && event.host === 'evil.example.test' && event.status === 403 && event.reason === 'host-not-allowed')).toBe(true)
  })

  test('a CONNECT target longer than DNS allows (253 chars, labels 63) is refused 400 and audited without the name', async () => {
    const refuse = (target: string): Promise<string> =>
      new Promise((resolve) => {
        const socket = netConnect(join(dir, 'egress.sock'))
        let text = ''
        socket.on('data', (chunk: Buffer) => (text += chunk.toString()))
        socket.on('close', () => resolve(text))
        socket.write(`CONNECT ${target}:443 HTTP/1.1\r\n\r\n`)
      })
    const from = audit.length
    expect(await refuse(`${'a'.repeat(15_000)}.example.test`)).toMatch(/^HTTP\/1\.1 400 /)
    expect(await refuse(`${'a'.repeat(64)}.example.test`)).toMatch(/^HTTP\/1\.1 400 /)
    const lines = audit.slice(from)
    expect(lines.map((line) => [line.status, line.reason, line.host])).toEqual([
      [400, 'bad-connect-target', ''],
      [400, 'bad-connect-target', ''],
    ])
  })

  test('a Host header naming another host than the CONNECT target is refused', async () => {
    const from = upstream.received.length
    const result = await curl([...viaProxy(), '-H', 'Host: other.example.test', 'https://api.example.test/x'])
    expect(result.status).toBe(403)
    expect(received(from)).toHaveLength(0)
    expect(refusals('host-mismatch').length).toBeGreaterThan(0)
  })

  test('a name resolving to loopback is refused unless the rule pins the upstream (rule host)', async () => {
    const from = upstream.received.length
    const result = await curl([...viaProxy(), `https://localhost:${upstream.port}/x`])
    expect(result.status).toBe(502)
    expect(received(from)).toHaveLength(0)
    expect(refusals('blocked-address').length).toBeGreaterThan(0)
  })

  test('... and for a plain tunnel to an allowed name', async () => {
    granted.delete('private')
    try {
      const result = await curl([...viaProxy(), `https://localhost:${upstream.port}/x`])
      expect(result.status).not.toBe(200)
      expect(audit.some((event) => event.method === 'CONNECT' && event.host === 'localhost' && event.reason === 'blocked-address')).toBe(true)
    } finally {
      granted.add('private')
    }
  })

  test('an upstream whose certificate does not verify gets no request and no credential', async () => {
    const from = upstream.received.length
    const result = await curl([...viaProxy(), 'https://wrongca.example.test/x'])
    expect(result.status).toBe(502)
    expect(received(from)).toHaveLength(0)
    expect(refusals('upstream-tls-unverified').length).toBeGreaterThan(0)
  })

  test('a rate-limited rule answers 429 with Retry-After', async () => {
    const first = await curl([...viaProxy(), 'https://limited.example.test/1'])
    const second = await curl([...viaProxy(), '-D', '-', 'https://limited.example.test/2'])
    expect(first.status).toBe(200)
    expect(second.status).toBe(429)
    expect(second.body.toLowerCase()).toMatch(/retry-after: \d+/)
  })

  test('a revoked rule stops injecting on the next request', async () => {
    granted.delete('example')
    try {
      const from = upstream.received.length
      const result = await proxyRequest('/example/x', { headers: { 'x-api-key': placeholder() } })
      expect(result.status).toBe(403)
      const connect = await curl([...viaProxy(), 'https://api.example.test/x'])
      expect(connect.status).not.toBe(200)
      expect(received(from)).toHaveLength(0)
    } finally {
      granted.add('example')
    }
  })

  test('the TCP listener wants the proxy token for CONNECT and the placeholder (or token) for a route', async () => {
    const noToken = await curl(['--proxy', `http://127.0.0.1:${proxy.tcpAddress?.port ?? 0}`, '--cacert', caFile, 'https://api.example.test/x'])
    expect(noToken.status).not.toBe(200)
    const wrong = await curl(['--proxy', `http://credproxy:wrong-token-000000000@127.0.0.1:${proxy.tcpAddress?.port ?? 0}`, '--cacert', caFile, 'https://api.example.test/x'])
    expect(wrong.status).not.toBe(200)
    const route = await proxyRequest('/example/x')
    expect(route.status).toBe(407)
  })

  test('audit lines never carry a secret, a placeholder or a query string', () => {
    const text = JSON.stringify(audit)
    expect(text).not.toContain(SECRET)
    expect(text).not.toContain(placeholder())
    expect(text).not.toContain('?')
    expect(audit.some((event) => event.injected && event.rule === 'example' && event.status === 200)).toBe(true)
  })
})
