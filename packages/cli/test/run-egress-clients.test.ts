// `credproxy run --egress` in real bubblewrap without a network: curl, git clone/push,
// Python urllib, unmodified Node fetch and https.get scripts, a WebSocket client and
// kubectl against a client-certificate API server all succeed holding only placeholders;
// a scan from inside (env, /proc/*/environ and cmdline, /proc/PID/mem of every process,
// every file of the sandbox's writable places and /etc) finds no real secret; refusals.
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { makeCliHome, removeCliHomes, runCli, type CliHome } from './helpers/cli-runner.js'
import {
  makeTestPki,
  startGitServer,
  startKubeApi,
  startRecorder,
  startWebSocketEcho,
  type GitServer,
  type KubeApi,
  type Recorder,
  type TestPki,
  type WebSocketEcho,
} from './helpers/egress-upstreams.js'
import { auditLogPath } from '../src/audit/audit-format.js'
import { resolvePaths } from '../src/paths.js'

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url))
// Random per run: no file on disk (this source included) holds them.
const SECRETS = {
  API_TOKEN: `api-${randomBytes(16).toString('hex')}`,
  GIT_PASSWORD: `git-${randomBytes(16).toString('hex')}`,
  WS_TOKEN: `ws-${randomBytes(16).toString('hex')}`,
  KUBE_TOKEN: `kube-${randomBytes(16).toString('hex')}`,
}

let pki: TestPki
let recorder: Recorder
let gitServer: GitServer
let wsEcho: WebSocketEcho
let kube: KubeApi
let home: CliHome

beforeAll(async () => {
  pki = await makeTestPki()
  ;[recorder, gitServer, wsEcho, kube] = await Promise.all([startRecorder(pki), startGitServer(pki, SECRETS.GIT_PASSWORD), startWebSocketEcho(pki), startKubeApi(pki)])
  home = await makeCliHome('cp-egress-clients-', async (stores) => {
    for (const [name, value] of Object.entries(SECRETS)) await stores.keys.saveKey(name, value)
    await stores.keys.saveKey('KUBE_CLIENT_CERT', pki.clientCertPem)
    await stores.keys.saveKey('KUBE_CLIENT_KEY', pki.clientKeyPem)
  })
  const pinned = (port: number): { upstream: string; ca: string } => ({ upstream: `127.0.0.1:${port}`, ca: pki.caFile })
  const paths = resolvePaths(home.env)
  await mkdir(paths.configDir, { recursive: true })
  await writeFile(
    join(paths.configDir, 'egress.json'),
    JSON.stringify({
      rules: [
        { name: 'api', hosts: ['api.egress.test'], credential: { key: 'API_TOKEN' }, inject: { header: 'authorization', format: 'Bearer {}' }, env: ['API_TOKEN'], ...pinned(recorder.port) },
        // No env: git has no credential configured at all inside; the proxy injects preemptively.
        { name: 'git', hosts: ['git.egress.test'], credential: { key: 'GIT_PASSWORD' }, inject: { basic: { user: 'x-access-token' } }, ...pinned(gitServer.port) },
        { name: 'ws', hosts: ['ws.egress.test'], credential: { key: 'WS_TOKEN' }, inject: { header: 'authorization', format: 'Bearer {}' }, env: ['WS_TOKEN'], ...pinned(wsEcho.port) },
        {
          name: 'kube',
          hosts: ['kube.egress.test'],
          credential: { key: 'KUBE_TOKEN' },
          inject: { header: 'authorization', format: 'Bearer {}' },
          clientCert: { cert: 'KUBE_CLIENT_CERT', key: 'KUBE_CLIENT_KEY' },
          env: ['KUBE_TOKEN'],
          ...pinned(kube.port),
        },
      ],
    }),
  )
  await writeFile(
    join(home.cwd, 'fetch.mjs'),
    "const res = await fetch('https://api.egress.test/node-fetch', { headers: { authorization: `Bearer ${process.env.API_TOKEN}` } })\nconsole.log('fetch', res.status)\n",
  )
  await writeFile(
    join(home.cwd, 'https-get.mjs'),
    "import https from 'node:https'\nhttps.get('https://api.egress.test/node-https', { headers: { authorization: `Bearer ${process.env.API_TOKEN}` } }, (res) => { res.resume(); console.log('https', res.statusCode); process.exit(0) })\n",
  )
  // Stays alive after its request so the scan reads a Node process that used the placeholder.
  await writeFile(
    join(home.cwd, 'keeper.mjs'),
    "import { writeFileSync } from 'node:fs'\nconst res = await fetch('https://api.egress.test/keeper', { headers: { authorization: `Bearer ${process.env.API_TOKEN}` } })\nawait res.text()\nwriteFileSync('keeper.ready', String(res.status))\nsetInterval(() => undefined, 1000)\n",
  )
}, 60_000)

afterAll(async () => {
  await Promise.all([recorder?.close(), gitServer?.close(), wsEcho?.close(), kube?.close()])
  await pki?.cleanup()
  removeCliHomes()
})

/** "prefix:sha256:length" for the in-sandbox scanner: it can recognise a secret without holding it. */
function scanSpec(secret: string): string {
  return `${secret.slice(0, 8)}:${createHash('sha256').update(secret).digest('hex')}:${secret.length}`
}

describe('real clients inside a network-less bwrap with --egress', () => {
  test('curl, git clone+push, Python, Node fetch and https.get, WebSocket and kubectl get through with placeholders only; nothing inside holds a secret', async () => {
    const clientKeyLine = pki.clientKeyPem.split('\n')[1] ?? ''
    // A canary the sandbox does hold (in its env, so in every process's environ and memory): proves the scan finds.
    const canary = `canary-${randomBytes(16).toString('hex')}`
    const specs = [...Object.values(SECRETS), clientKeyLine, canary].map(scanSpec)
    const canaryHit = `#${specs.length - 1}`
    const scanSecrets = specs.join(',')
    const script = `
set -u
export CANARY_VALUE=${canary}
curl -sS --max-time 20 -H "authorization: Bearer $API_TOKEN" https://api.egress.test/curl >/dev/null && echo curl-ok
git -c init.defaultBranch=main clone -q https://git.egress.test/repo.git clone && cd clone && echo pushed > pushed.txt && git add pushed.txt && git -c user.name=t -c user.email=t@example.invalid commit -qm push && git push -q origin HEAD:main && cd .. && echo git-ok
PY_AUTH="Bearer $API_TOKEN" /usr/bin/python3 ${FIXTURES}egress-urllib-client.py https://api.egress.test/python authorization PY_AUTH
node fetch.mjs
node https-get.mjs
WS_URL=wss://ws.egress.test/echo WS_SEND="[\\"hello $WS_TOKEN\\"]" node ${FIXTURES}egress-ws-client.mjs
mkdir -p "$HOME/.kube"
printf 'apiVersion: v1\\nkind: Config\\nclusters: [{name: c, cluster: {server: "https://kube.egress.test"}}]\\nusers: [{name: u, user: {token: "%s"}}]\\ncontexts: [{name: x, context: {cluster: c, user: u}}]\\ncurrent-context: x\\n' "$KUBE_TOKEN" > "$HOME/.kube/config"
kubectl get namespaces -o name --request-timeout=20s
echo "refused-host $(curl -s -o /dev/null -w '%{http_connect}' --max-time 20 https://unlisted.example.test/)"
echo "foreign-placeholder $(curl -s -o /dev/null -w '%{http_code}' --max-time 20 -H "authorization: Bearer $API_TOKEN" https://ws.egress.test/)"
node keeper.mjs & keeper=$!
i=0; while [ ! -f keeper.ready ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done
SCAN_SECRETS='${scanSecrets}' /usr/bin/python3 ${FIXTURES}egress-sandbox-scan.py /tmp /var/tmp /run /etc "$HOME" "$PWD"
kill $keeper
echo "placeholder $API_TOKEN"
`
    const result = await runCli(['run', '--sandbox', 'bwrap', '--egress', 'api', '--egress', 'git', '--egress', 'ws', '--egress', 'kube', '--', 'sh', '-c', script], { env: home.env, cwd: home.cwd })
    const out = result.stdout
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    expect(out).toContain('curl-ok\n')
    expect(out).toContain('git-ok\n')
    expect(out).toContain('{"status": 200')
    expect(out).toContain('fetch 200\n')
    expect(out).toContain('https 200\n')
    expect(out).toContain(kube.namespaces.map((n) => `namespace/${n}`).join('\n'))
    expect(out).toContain('refused-host 403\n')
    expect(out).toContain('foreign-placeholder 403\n')
    const placeholder = /^placeholder (\S+)$/m.exec(out)?.[1] ?? ''
    expect(placeholder).toMatch(/cpxph0/)
    // The WebSocket message left with the placeholder, reached the upstream as the secret, came back as the placeholder.
    expect(wsEcho.messages).toContain(`hello ${SECRETS.WS_TOKEN}`)
    expect(out).toMatch(/"echoes":\["hello [^"]*cpxph0[^"]*"\]/)
    const scan = JSON.parse(out.split('\n').find((line) => line.startsWith('{"hits"')) ?? '{}') as { hits: string[]; processes: number; bytesRead: number; files: number }
    expect(scan.hits.filter((hit) => !hit.endsWith(canaryHit))).toEqual([])
    expect(scan.hits.some((hit) => /^\/proc\/\d+\/mem#/.test(hit))).toBe(true)
    expect(scan.hits.some((hit) => /^\/proc\/\d+\/environ#/.test(hit))).toBe(true)
    // The forwarder, the init shell and the kept Node process at least: memory really was read.
    expect(scan.processes).toBeGreaterThanOrEqual(3)
    expect(scan.bytesRead).toBeGreaterThan(10_000_000)
    expect(scan.files).toBeGreaterThan(10)
    for (const secret of Object.values(SECRETS)) expect(out).not.toContain(secret)
    // What the upstreams received: the real credentials, never a placeholder.
    const apiAuth = recorder.requests.map((r) => [r.path, r.headers.authorization])
    for (const path of ['/curl', '/python', '/node-fetch', '/node-https', '/keeper']) expect(apiAuth).toContainEqual([path, `Bearer ${SECRETS.API_TOKEN}`])
    expect(gitServer.requests.length).toBeGreaterThan(0)
    expect(gitServer.requests.every((r) => r.authorized)).toBe(true)
    expect(await readFile(join(gitServer.bareDir, 'refs', 'heads', 'main'), 'utf8')).toMatch(/^[0-9a-f]{40}/)
    expect(kube.requests.length).toBeGreaterThan(0)
    for (const r of kube.requests) {
      expect(r.clientCommonName).toBe(pki.clientCommonName)
      expect(r.headers.authorization).toBe(`Bearer ${SECRETS.KUBE_TOKEN}`)
    }
    const audit = await readFile(auditLogPath(resolvePaths(home.env)), 'utf8')
    expect(audit).toContain('"reason":"host-not-allowed"')
    expect(audit).toMatch(/"reason":"foreign-placeholder-in-header"/)
    for (const secret of Object.values(SECRETS)) expect(audit).not.toContain(secret)
  }, 120_000)

  test('--egress kube:CONTEXT: kubectl inside uses a kubeconfig whose server is the route; the host presents the client certificate and token from its own kubeconfig', async () => {
    const hostKubeconfig = join(home.home, 'host-kubeconfig.json')
    const b64 = (text: string): string => Buffer.from(text).toString('base64')
    await writeFile(
      hostKubeconfig,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'lab', cluster: { server: `https://127.0.0.1:${kube.port}`, 'certificate-authority-data': b64(pki.caPem) } }],
        users: [{ name: 'lab-admin', user: { token: SECRETS.KUBE_TOKEN, 'client-certificate-data': b64(pki.clientCertPem), 'client-key-data': b64(pki.clientKeyPem) } }],
        contexts: [{ name: 'lab', context: { cluster: 'lab', user: 'lab-admin' } }],
        'current-context': 'lab',
      }),
    )
    const before = kube.requests.length
    const script = 'kubectl get namespaces -o name --request-timeout=20s && echo "kubeconfig=$KUBECONFIG" && cat "$KUBECONFIG"'
    const result = await runCli(['run', '--sandbox', 'bwrap', '--egress', 'kube:lab', '--', 'sh', '-c', script], { env: { ...home.env, KUBECONFIG: hostKubeconfig }, cwd: home.cwd })
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    expect(result.stdout).toContain(kube.namespaces.map((n) => `namespace/${n}`).join('\n'))
    expect(result.stdout).toContain('kubeconfig=/run/credproxy/kube-lab.kubeconfig')
    expect(result.stdout).toContain('"server": "http://127.0.0.1:3128/kube-lab"')
    expect(result.stdout).not.toContain(SECRETS.KUBE_TOKEN)
    expect(result.stdout).not.toContain(pki.clientKeyPem.split('\n')[1])
    const seen = kube.requests.slice(before)
    expect(seen.length).toBeGreaterThan(0)
    for (const r of seen) {
      expect(r.clientCommonName).toBe(pki.clientCommonName)
      expect(r.headers.authorization).toBe(`Bearer ${SECRETS.KUBE_TOKEN}`)
    }
  }, 60_000)

  test('--egress kube:CONTEXT for a context that does not exist is a usage error naming it', async () => {
    const result = await runCli(['run', '--sandbox', 'bwrap', '--egress', 'kube:nope', '--', 'true'], { env: { ...home.env, KUBECONFIG: join(home.home, 'host-kubeconfig.json') }, cwd: home.cwd })
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('--egress kube:nope: cannot read that context from your kubeconfig')
  })
})
