// The egress proxy end to end with real TLS: curl through CONNECT (the session CA
// trusted, the upstream pinned to a local HTTPS server with its own test CA), a
// Node client on a reverse route, and every fail-closed case of the issue.
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { startEgressProxy, type EgressAuditEvent, type EgressProxy } from '../src/egress/index.js'
import { EgressRuleSchema, type EgressRuleInput } from '../src/egress/rules.js'
import { startTestUpstream, type TestUpstream } from './helpers/egress-test-upstream.js'

const run = promisify(execFile)
const TOKEN = 'test-proxy-token-0123456789'
const SECRET = 'real-secret-value-4f1d2c'

let dir: string
let upstream: TestUpstream
let proxy: EgressProxy
let caFile: string
const audit: EgressAuditEvent[] = []
const granted = new Set(['example', 'other'])
const keys = new Map<string, string>([
  ['EXAMPLE_KEY', SECRET],
  ['OTHER_KEY', 'other-secret-value'],
])

function rule(input: Partial<EgressRuleInput> & { name: string }): ReturnType<typeof EgressRuleSchema.parse> {
  return EgressRuleSchema.parse({ hosts: ['api.example.test'], credential: { key: 'EXAMPLE_KEY' }, inject: { header: 'authorization', format: 'Bearer {}' }, ...input })
}

async function curl(args: string[]): Promise<{ status: number; body: string }> {
  const { stdout } = await run('curl', ['-sS', '--max-time', '20', '-w', '\n%{http_code}', ...args]).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? '' }))
  const at = stdout.lastIndexOf('\n')
  return { status: Number(stdout.slice(at + 1)), body: stdout.slice(0, at) }
}

function viaProxy(): string[] {
  const address = proxy.tcpAddress
  return ['--proxy', `http://credproxy:${TOKEN}@127.0.0.1:${address?.port ?? 0}`, '--cacert', caFile]
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cp-egress-'))
  upstream = await startTestUpstream(dir, (req, res, body) => {
    if (req.url?.startsWith('/echo')) {
      // An upstream that echoes the credential back (a debug endpoint).
      res.writeHead(200, { 'content-type': 'text/plain', 'x-echo': String(req.headers.authorization ?? '') })
      res.end(`auth=${String(req.headers.authorization ?? '')} body=${body.toString()}`)
      return
    }
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ ok: true, url: req.url }))
  }, { names: ['api.example.test', 'other.example.test'] })
  proxy = await startEgressProxy({
    session: 'egress-test',
    rules: [
      rule({ name: 'example', upstream: `127.0.0.1:${upstream.port}`, ca: upstream.caFile, route: '/example' }),
      rule({ name: 'other', hosts: ['other.example.test'], credential: { key: 'OTHER_KEY' }, upstream: `127.0.0.1:${upstream.port}`, ca: upstream.caFile }),
    ],
    grantedRules: () => granted,
    credentials: { apiKey: (name) => Promise.resolve(keys.get(name) ?? null), accessToken: () => Promise.resolve(null) },
    audit: (event) => audit.push(event),
    socketPath: join(dir, 'egress.sock'),
    tcp: { host: '127.0.0.1', port: 0 },
    proxyToken: TOKEN,
  })
  caFile = join(dir, 'session-ca.pem')
  writeFileSync(caFile, proxy.caCertPem)
})

afterAll(async () => {
  await proxy.close()
  await upstream.close()
  rmSync(dir, { recursive: true, force: true })
})

describe('injection through CONNECT with curl', () => {
  test('the upstream receives the real key; the client sent only the placeholder', async () => {
    const placeholder = proxy.placeholders.get('example') ?? ''
    const before = upstream.received.length
    const result = await curl([...viaProxy(), '-H', `authorization: Bearer ${placeholder}`, 'https://api.example.test/v1/thing'])
    expect(result.status).toBe(200)
    const seen = upstream.received.slice(before)
    expect(seen).toHaveLength(1)
    expect(seen[0]?.headers.authorization).toBe(`Bearer ${SECRET}`)
    expect(seen[0]?.servername).toBe('api.example.test')
    expect(seen[0]?.headers.host).toBe('api.example.test')
  })
})
