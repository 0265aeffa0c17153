// Child processes of bench/egress.bench.ts (forked with tsx), so the upstream, the proxy and the load
// generator each have their own event loop and the proxy's RSS is its own:
//   egress-child.ts upstream <pkiDir>            -> { port }
//   egress-child.ts proxy <pkiDir> <upstreamPort> -> { port, caCertPem, placeholder, proxyToken }
// Both answer the message 'rss' with { rss } and exit when the parent disconnects.
import { randomBytes } from 'node:crypto'
import { EgressRuleSchema, startEgressProxy } from '../packages/cli/src/egress/index.js'
import { loadTestPki, startRecorder } from '../packages/cli/test/helpers/egress-upstreams.js'

const [role, pkiDir, upstreamPort] = process.argv.slice(2)
const secret = process.env['BENCH_SECRET'] ?? 'real-bench-secret'
if (process.send === undefined || pkiDir === undefined) throw new Error('egress-child.ts is forked by bench/egress.bench.ts')
const send = (message: unknown): void => {
  process.send?.(message)
}
process.on('message', (message) => {
  if (message === 'rss') {
    globalThis.gc?.()
    send({ rss: process.memoryUsage().rss })
  }
})
process.on('disconnect', () => process.exit(0))

const pki = await loadTestPki(pkiDir)
if (role === 'upstream') {
  const recorder = await startRecorder(pki, { record: false })
  send({ port: recorder.port })
} else if (role === 'proxy') {
  const rule = EgressRuleSchema.parse({
    name: 'api',
    hosts: ['api.egress.test', '*.leaf.egress.test'],
    credential: { key: 'API_TOKEN' },
    inject: { header: 'authorization', format: 'Bearer {}' },
    route: '/api',
    upstream: `127.0.0.1:${upstreamPort ?? ''}`,
    ca: pki.caFile,
  })
  const proxyToken = randomBytes(24).toString('hex')
  const proxy = await startEgressProxy({
    session: 'bench',
    rules: [rule],
    grantedRules: () => new Set(['api']),
    credentials: { apiKey: () => Promise.resolve(secret), accessToken: () => Promise.resolve(null) },
    audit: () => undefined,
    tcp: { host: '127.0.0.1', port: 0 },
    proxyToken,
  })
  send({ port: proxy.tcpAddress?.port, caCertPem: proxy.caCertPem, placeholder: proxy.placeholders.get('api'), proxyToken })
} else {
  throw new Error(`unknown role ${String(role)}`)
}
