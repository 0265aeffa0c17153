// The egress door with credential sources: a rule's key declared in sources.json is
// minted on the host by its command and injected; a request for a rule not granted
// never runs its source.
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { SourcedCredentialSource } from '../src/credentials/sourced-credential-source.js'
import { StoredCredentialSource } from '../src/credentials/stored-credential-source.js'
import { parseSourcesConfig } from '../src/credentials/sources-config.js'
import { hostEgressCredentials, startEgressProxy, type EgressProxy } from '../src/egress/index.js'
import { EgressRuleSchema, type EgressRule } from '../src/egress/rules.js'
import { startTestUpstream, type TestUpstream } from './helpers/egress-test-upstream.js'
import { memoryStores } from './helpers/server-memory-stores.js'

let dir: string
let upstream: TestUpstream
let proxy: EgressProxy

function mintScript(name: string): string {
  const path = join(dir, `${name}.sh`)
  writeFileSync(path, `#!/bin/sh\necho run >> '${join(dir, `${name}.runs`)}'\necho minted-${name}-value\n`)
  chmodSync(path, 0o755)
  return path
}

function runs(name: string): number {
  const file = join(dir, `${name}.runs`)
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).length : 0
}

function rule(name: string, key: string): EgressRule {
  return EgressRuleSchema.parse({
    name,
    hosts: ['api.example.test'],
    route: `/${name}`,
    credential: { key },
    inject: { header: 'authorization', format: 'Bearer {}' },
    upstream: `127.0.0.1:${upstream.port}`,
    ca: upstream.caFile,
  })
}

function get(path: string, placeholder: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: proxy.tcpAddress?.port ?? 0, path, headers: { authorization: `Bearer ${placeholder}` }, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }))
    })
    req.on('error', reject)
    req.end()
  })
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cp-egress-sources-'))
  upstream = await startTestUpstream(dir, (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end(`auth=${String(req.headers.authorization ?? '')}`)
  })
  const config = parseSourcesConfig(JSON.stringify({ keys: { A_KEY: { command: [mintScript('a')] }, B_KEY: { command: [mintScript('b')] } } }), join(dir, 'sources.json'))
  const credentials = new SourcedCredentialSource(new StoredCredentialSource(memoryStores()), config, { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' } })
  proxy = await startEgressProxy({
    session: 'egress-sources-test',
    rules: [rule('a', 'A_KEY'), rule('b', 'B_KEY')],
    grantedRules: () => new Set(['a']),
    credentials: hostEgressCredentials(credentials),
    audit: () => undefined,
    socketPath: join(dir, 'egress.sock'),
    tcp: { host: '127.0.0.1', port: 0 },
    proxyToken: 'egress-sources-token-0123456789',
    allowedHosts: [],
  })
})

afterAll(async () => {
  await proxy.close()
  await upstream.close()
  rmSync(dir, { recursive: true, force: true })
})

describe('egress injection from a credential source', () => {
  test('a granted rule gets the value its source minted on the host', async () => {
    const result = await get('/a/x', proxy.placeholders.get('a') ?? '')
    expect(result.status).toBe(200)
    // The upstream saw the minted value (the proxy swaps it back to the placeholder in what the client reads).
    expect(upstream.received.at(-1)?.headers.authorization).toBe('Bearer minted-a-value')
    expect(result.body).not.toContain('minted-a-value')
    expect(runs('a')).toBe(1)
  })

  test('a rule not granted is refused and its source never runs', async () => {
    const result = await get('/b/x', proxy.placeholders.get('b') ?? '')
    expect(result.status).toBe(403)
    expect(upstream.received.map((r) => r.headers.authorization)).not.toContain('Bearer minted-b-value')
    expect(runs('b')).toBe(0)
  })
})
