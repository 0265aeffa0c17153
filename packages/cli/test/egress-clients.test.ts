// The egress proxy with real clients over real TLS: curl, git (clone and push against git http-backend),
// Python urllib, Node fetch on a reverse route, a WebSocket client and kubectl against an mTLS API server.
// For each: the upstream receives the real credential, the client only ever held the placeholder (env, argv,
// config files, output), and the placeholder on its way to another rule's host is refused.
import { fork, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Duplex } from 'node:stream'
import { connect as tlsConnect, type TLSSocket } from 'node:tls'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EgressRuleSchema, startEgressProxy, type EgressAuditEvent, type EgressProxy } from '../src/egress/index.js'
import {
  makeTestPki,
  SSE_EVENTS,
  SSE_INTERVAL_MS,
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

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url))
const GIB = 1024 ** 3
/** RSS growth allowed while 1 GiB streams through the proxy (the issue's bound). */
const MAX_UPLOAD_RSS_GROWTH_BYTES = 64 * 1024 * 1024
/** Time to first SSE event through the proxy may exceed the direct path by at most this (the issue's bound). */
const MAX_SSE_FIRST_EVENT_DELAY_MS = 50

const secret = (label: string): string => `real-${label}-${randomBytes(18).toString('hex')}`
const SECRETS = {
  API_TOKEN: secret('api'),
  OTHER_KEY: secret('other'),
  QUERY_KEY: secret('query'),
  OAUTH_STALE: secret('oauth-stale'),
  OAUTH_FRESH: secret('oauth-fresh'),
  GIT_PASSWORD: secret('git'),
  WS_TOKEN: secret('ws'),
  KUBE_TOKEN: secret('kube'),
}

let pki: TestPki
let recorder: Recorder
let gitServer: GitServer
let wsEcho: WebSocketEcho
let kube: KubeApi
let proxy: EgressProxy
let proxyToken: string
let proxyUrl: string
let work: string
/** The client side: its HOME, config files and clones live here, and must never hold a real secret. */
let clientHome: string
let sessionCaFile: string
let python: string
const audit: EgressAuditEvent[] = []
let oauthCalls: Array<{ forceRefresh: boolean }> = []
let oauthCurrent = SECRETS.OAUTH_STALE

function placeholder(rule: string): string {
  const value = proxy.placeholders.get(rule)
  if (value === undefined) throw new Error(`no placeholder for rule ${rule}`)
  return value
}

/** Every secret value the host holds (the client certificate's key included). */
function realSecrets(): string[] {
  return [...Object.values(SECRETS), pki.clientKeyPem.split('\n').slice(1, -2).join('')]
}

function expectNoRealSecret(text: string, where: string): void {
  for (const value of realSecrets()) {
    expect(text.includes(value), `${where} holds a real secret`).toBe(false)
  }
}

interface ClientRun {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs a client process with exactly `env` (no inherited secrets) after checking env and argv hold none. */
async function runClient(cmd: string, args: string[], env: Record<string, string>, options: { cwd?: string } = {}): Promise<ClientRun> {
  expectNoRealSecret(JSON.stringify({ cmd, args, env }), `${cmd}'s env/argv`)
  const child = spawn(cmd, args, { env, cwd: options.cwd ?? clientHome, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', resolve)
  })
  expectNoRealSecret(stdout + stderr, `${cmd}'s output`)
  return { code, stdout, stderr }
}

/** The environment a sandboxed client gets: the proxy, the session CA, a HOME of its own, nothing else. */
function clientEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: clientHome,
    LANG: 'C.UTF-8',
    HTTPS_PROXY: proxyUrl,
    https_proxy: proxyUrl,
    NO_PROXY: '',
    no_proxy: '',
    ...extra,
  }
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out.push(join(entry.parentPath, entry.name))
  }
  return out
}

async function expectClientFilesClean(): Promise<void> {
  const files = await filesUnder(clientHome)
  expect(files.length).toBeGreaterThan(0)
  for (const file of files) expectNoRealSecret(await readFile(file, 'latin1'), file)
}

function rule(input: Record<string, unknown>): ReturnType<typeof EgressRuleSchema.parse> {
  return EgressRuleSchema.parse(input)
}

beforeAll(async () => {
  pki = await makeTestPki()
  work = await mkdtemp(join(tmpdir(), 'egress-clients-'))
  clientHome = join(work, 'home')
  await mkdir(clientHome)
  ;[recorder, gitServer, wsEcho, kube] = await Promise.all([
    startRecorder(pki),
    startGitServer(pki, SECRETS.GIT_PASSWORD),
    startWebSocketEcho(pki),
    startKubeApi(pki),
  ])
  recorder.acceptedToken = SECRETS.OAUTH_FRESH
  const pinned = (port: number): { upstream: string; ca: string } => ({ upstream: `127.0.0.1:${port}`, ca: pki.caFile })
  const rules = [
    rule({ name: 'api', hosts: ['api.egress.test'], credential: { key: 'API_TOKEN' }, inject: { header: 'authorization', format: 'Bearer {}' }, route: '/api', ...pinned(recorder.port) }),
    rule({ name: 'other', hosts: ['other.egress.test'], credential: { key: 'OTHER_KEY' }, inject: { header: 'x-api-key' }, route: '/other', ...pinned(recorder.port) }),
    rule({ name: 'query', hosts: ['query.egress.test'], credential: { key: 'QUERY_KEY' }, inject: { query: 'api_key' }, ...pinned(recorder.port) }),
    rule({ name: 'oauth', hosts: ['oauth.egress.test'], credential: { oauth: 'testprov' }, inject: { header: 'authorization', format: 'Bearer {}' }, ...pinned(recorder.port) }),
    rule({ name: 'git', hosts: ['git.egress.test'], credential: { key: 'GIT_PASSWORD' }, inject: { basic: { user: 'x-access-token' } }, ...pinned(gitServer.port) }),
    rule({ name: 'ws', hosts: ['ws.egress.test'], credential: { key: 'WS_TOKEN' }, inject: { header: 'authorization', format: 'Bearer {}' }, ...pinned(wsEcho.port) }),
    rule({
      name: 'kube',
      hosts: ['kube.egress.test'],
      credential: { key: 'KUBE_TOKEN' },
      inject: { header: 'authorization', format: 'Bearer {}' },
      clientCert: { cert: 'KUBE_CLIENT_CERT', key: 'KUBE_CLIENT_KEY' },
      ...pinned(kube.port),
    }),
  ]
  const keys = new Map<string, string>([
    ...Object.entries(SECRETS),
    ['KUBE_CLIENT_CERT', pki.clientCertPem],
    ['KUBE_CLIENT_KEY', pki.clientKeyPem],
  ])
  proxyToken = randomBytes(24).toString('hex')
  proxy = await startEgressProxy({
    session: 'clients-test',
    rules,
    grantedRules: () => new Set(rules.map((r) => r.name)),
    credentials: {
      apiKey: (name) => Promise.resolve(keys.get(name) ?? null),
      accessToken: (_provider, _bucket, options) => {
        oauthCalls.push({ forceRefresh: options?.forceRefresh === true })
        if (options?.forceRefresh === true) oauthCurrent = SECRETS.OAUTH_FRESH
        return Promise.resolve(oauthCurrent)
      },
    },
    audit: (event) => audit.push(event),
    tcp: { host: '127.0.0.1', port: 0 },
    proxyToken,
    socketPath: join(work, 'egress.sock'),
  })
  const address = proxy.tcpAddress
  if (address === null) throw new Error('the proxy has no tcp listener')
  proxyUrl = `http://credproxy:${proxyToken}@127.0.0.1:${address.port}`
  sessionCaFile = join(clientHome, 'session-ca.pem')
  await writeFile(sessionCaFile, proxy.caCertPem)
  // The pyenv shim needs the real HOME: resolve the interpreter once with the test's own environment.
  python = await new Promise<string>((resolve, reject) => {
    const child = spawn('python3', ['-c', 'import sys; print(sys.executable)'], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()))
    child.on('error', reject)
    child.on('close', () => resolve(out.trim()))
  })
}, 60_000)

afterAll(async () => {
  await proxy?.close()
  await Promise.all([recorder?.close(), gitServer?.close(), wsEcho?.close(), kube?.close()])
  await pki?.cleanup()
  if (work !== undefined) await rm(work, { recursive: true, force: true })
})

describe('curl through CONNECT interception', () => {
  const curl = (args: string[]): Promise<ClientRun> =>
    runClient('curl', ['-sS', '--max-time', '20', '-w', '\n%{http_code}', ...args], clientEnv({ CURL_CA_BUNDLE: sessionCaFile }))
  const status = (run: ClientRun): number => Number(run.stdout.trim().split('\n').pop())

  it('swaps the placeholder for the real token; the upstream sees the real one, path and query intact', async () => {
    const before = recorder.requests.length
    const run = await curl(['-H', `authorization: Bearer ${placeholder('api')}`, 'https://api.egress.test/v1/items?page=2&q=a%20b'])
    expect(run.stderr).toBe('')
    expect(status(run)).toBe(200)
    const seen = recorder.requests.slice(before)
    expect(seen).toHaveLength(1)
    expect(seen[0]?.headers.authorization).toBe(`Bearer ${SECRETS.API_TOKEN}`)
    expect(seen[0]?.headers.host).toBe('api.egress.test')
    expect(seen[0]?.path).toBe('/v1/items')
    expect(seen[0]?.query).toBe('page=2&q=a%20b')
  })

  it('injects preemptively when the client sends no credential at all', async () => {
    const before = recorder.requests.length
    const run = await curl(['https://api.egress.test/v1/preemptive'])
    expect(status(run)).toBe(200)
    expect(recorder.requests.slice(before)[0]?.headers.authorization).toBe(`Bearer ${SECRETS.API_TOKEN}`)
  })

  it('hands the client the placeholder when the upstream echoes the real secret (headers and body)', async () => {
    const run = await curl(['-i', '-H', `authorization: Bearer ${placeholder('api')}`, 'https://api.egress.test/echo-auth'])
    expect(status(run)).toBe(200)
    // runClient already checked that the output holds no real secret; the echo must still be there, as the placeholder.
    expect(run.stdout).toMatch(new RegExp(`x-echo-authorization: Bearer ${placeholder('api')}`, 'i'))
    expect(run.stdout).toContain(`"authorization":"Bearer ${placeholder('api')}"`)
  })

  it('refreshes an OAuth token once after an upstream 401 and retries with the fresh one', async () => {
    oauthCurrent = SECRETS.OAUTH_STALE
    oauthCalls = []
    const before = recorder.requests.length
    const run = await curl(['-H', `authorization: Bearer ${placeholder('oauth')}`, 'https://oauth.egress.test/needs-token'])
    expect(status(run)).toBe(200)
    const auths = recorder.requests.slice(before).map((r) => r.headers.authorization)
    expect(auths).toEqual([`Bearer ${SECRETS.OAUTH_STALE}`, `Bearer ${SECRETS.OAUTH_FRESH}`])
    expect(oauthCalls.filter((c) => c.forceRefresh)).toHaveLength(1)
  })

  it("refuses a placeholder on its way to another rule's host: in a header, in Basic, in the query, percent-encoded", async () => {
    const before = recorder.requests.length
    const api = placeholder('api')
    const basic = Buffer.from(`user:${api}`).toString('base64')
    const attempts = [
      ['-H', `x-api-key: ${api}`, 'https://other.egress.test/launder'],
      ['-H', `authorization: Basic ${basic}`, 'https://other.egress.test/launder'],
      [`https://other.egress.test/launder?token=${api}`],
      [`https://other.egress.test/launder?token=${encodeURIComponent(api).replace(/[a-z0-9]/gi, (c) => `%${c.charCodeAt(0).toString(16)}`)}`],
      [`https://other.egress.test/launder/${api}`],
    ]
    for (const args of attempts) {
      const run = await curl(args)
      expect(status(run), args.join(' ')).toBe(403)
    }
    expect(recorder.requests.slice(before)).toEqual([])
    expect(audit.filter((e) => e.host === 'other.egress.test' && e.status === 403).length).toBeGreaterThanOrEqual(attempts.length)
  })

  it('refuses CONNECT to a host with no rule and no allowance, and without the proxy token', async () => {
    const denied = await curl(['https://nowhere.egress.test/'])
    expect(denied.code).not.toBe(0)
    const env = clientEnv({ CURL_CA_BUNDLE: sessionCaFile, HTTPS_PROXY: proxyUrl.replace(proxyToken, 'wrong-token-0000000000'), https_proxy: '' })
    const noToken = await runClient('curl', ['-sS', '--max-time', '20', 'https://api.egress.test/v1/items'], env)
    expect(noToken.code).not.toBe(0)
    expect(noToken.stderr).toMatch(/407/)
  })
})

describe('curl through the Unix socket, bridged by socat as inside a sandbox', () => {
  it('reaches the rule host with the real token; the socket needs no proxy token', async () => {
    const socketPath = proxy.socketPath
    if (socketPath === null) throw new Error('the proxy has no Unix socket')
    const port = await new Promise<number>((resolve) => {
      const probe = createNetServer().listen(0, '127.0.0.1', () => {
        const { port: free } = probe.address() as AddressInfo
        probe.close(() => resolve(free))
      })
    })
    // The sandbox's bridge: a loopback TCP port inside, the session's Unix socket outside.
    const socat = spawn('socat', [`TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`, `UNIX-CONNECT:${socketPath}`], { stdio: 'ignore' })
    try {
      for (let i = 0; i < 50; i++) {
        const up = await new Promise<boolean>((resolve) => {
          const probe = netConnect({ host: '127.0.0.1', port }, () => {
            probe.destroy()
            resolve(true)
          })
          probe.on('error', () => resolve(false))
        })
        if (up) break
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      const before = recorder.requests.length
      const bridge = `http://127.0.0.1:${port}`
      const run = await runClient(
        'curl',
        ['-sS', '--max-time', '20', '-w', '\n%{http_code}', '-H', `authorization: Bearer ${placeholder('api')}`, 'https://api.egress.test/v1/over-socket'],
        clientEnv({ CURL_CA_BUNDLE: sessionCaFile, HTTPS_PROXY: bridge, https_proxy: bridge }),
      )
      expect(run.stderr).toBe('')
      expect(run.stdout.trim().split('\n').pop()).toBe('200')
      const seen = recorder.requests.slice(before)
      expect(seen.map((r) => [r.path, r.headers.authorization])).toEqual([['/v1/over-socket', `Bearer ${SECRETS.API_TOKEN}`]])
    } finally {
      socat.kill('SIGTERM')
    }
  })
})

describe('git over HTTPS (git http-backend behind Basic auth)', () => {
  const gitEnv = (): Record<string, string> =>
    clientEnv({ GIT_SSL_CAINFO: sessionCaFile, GIT_TERMINAL_PROMPT: '0', GIT_CONFIG_NOSYSTEM: '1', GIT_AUTHOR_NAME: 'sandbox', GIT_AUTHOR_EMAIL: 'sandbox@example.invalid', GIT_COMMITTER_NAME: 'sandbox', GIT_COMMITTER_EMAIL: 'sandbox@example.invalid' })
  const gitRun = (args: string[], cwd?: string): Promise<ClientRun> => runClient('git', args, gitEnv(), cwd === undefined ? {} : { cwd })

  function expectOnlyRealPassword(from: number): void {
    const seen = gitServer.requests.slice(from)
    expect(seen.length).toBeGreaterThan(0)
    for (const r of seen) {
      expect(r.authorized, `${r.method} ${r.path}`).toBe(true)
      const decoded = Buffer.from((r.headers.authorization ?? '').replace(/^Basic /, ''), 'base64').toString()
      expect(decoded).toBe(`x-access-token:${SECRETS.GIT_PASSWORD}`)
    }
  }

  it('clones with the placeholder as the URL password and pushes a commit; the server only saw the real password', async () => {
    const before = gitServer.requests.length
    const url = `https://x-access-token:${placeholder('git')}@git.egress.test/repo.git`
    const clone = await gitRun(['clone', '-q', url, 'with-placeholder'])
    expect(clone.stderr).toBe('')
    expect(clone.code).toBe(0)
    const dir = join(clientHome, 'with-placeholder')
    expect(await readFile(join(dir, 'README.md'), 'utf8')).toContain('hello from the egress git upstream')
    await writeFile(join(dir, 'pushed.txt'), 'pushed through the egress proxy\n')
    expect((await gitRun(['add', 'pushed.txt'], dir)).code).toBe(0)
    expect((await gitRun(['commit', '-q', '-m', 'push through the proxy'], dir)).code).toBe(0)
    // The placeholder also goes out in Basic on every request (as a credential helper would send it).
    const basic = Buffer.from(`x-access-token:${placeholder('git')}`).toString('base64')
    const push = await gitRun(['-c', `http.extraHeader=Authorization: Basic ${basic}`, 'push', '-q', 'origin', 'HEAD:main'], dir)
    expect(push.code, push.stderr).toBe(0)
    expectOnlyRealPassword(before)
    expect(gitServer.requests.slice(before).some((r) => r.path.endsWith('/git-receive-pack'))).toBe(true)
    const log = await runClient('git', ['-C', gitServer.bareDir, 'log', '--format=%s', 'main'], clientEnv())
    expect(log.stdout.split('\n')[0]).toBe('push through the proxy')
  })

  it('clones with no credential at all (git sends none before a 401: the proxy injects preemptively)', async () => {
    const before = gitServer.requests.length
    const clone = await gitRun(['clone', '-q', 'https://git.egress.test/repo.git', 'no-credential'])
    expect(clone.code, clone.stderr).toBe(0)
    expectOnlyRealPassword(before)
  })

  it("refuses another rule's placeholder sent to the git host in Basic", async () => {
    const before = gitServer.requests.length
    const basic = Buffer.from(`x-access-token:${placeholder('api')}`).toString('base64')
    const clone = await gitRun(['-c', `http.extraHeader=Authorization: Basic ${basic}`, 'clone', '-q', 'https://git.egress.test/repo.git', 'laundered'])
    expect(clone.code).not.toBe(0)
    expect(clone.stderr).toMatch(/403/)
    expect(gitServer.requests.slice(before)).toEqual([])
  })
})

describe('Python urllib through HTTPS_PROXY', () => {
  const py = (args: string[], extra: Record<string, string>): Promise<ClientRun> =>
    runClient(python, [join(FIXTURES, 'egress-urllib-client.py'), ...args], clientEnv({ SSL_CERT_FILE: sessionCaFile, ...extra }))
  const answer = (run: ClientRun): { status: number; body: string } => JSON.parse(run.stdout) as { status: number; body: string }

  it('swaps a raw x-api-key placeholder and a query-parameter placeholder', async () => {
    const before = recorder.requests.length
    const header = await py(['https://other.egress.test/v1/models', 'x-api-key', 'OTHER_API_KEY'], { OTHER_API_KEY: placeholder('other') })
    expect(header.stderr).toBe('')
    expect(answer(header).status).toBe(200)
    const query = await py([`https://query.egress.test/search?q=x&api_key=${placeholder('query')}`], {})
    expect(answer(query).status).toBe(200)
    const seen = recorder.requests.slice(before)
    expect(seen[0]?.headers['x-api-key']).toBe(SECRETS.OTHER_KEY)
    expect(seen[1]?.query).toBe(`q=x&api_key=${SECRETS.QUERY_KEY}`)
    expect(seen[1]?.headers.host).toBe('query.egress.test')
  })

  it("refuses another rule's placeholder", async () => {
    const before = recorder.requests.length
    const run = await py(['https://api.egress.test/v1/models', 'x-api-key', 'OTHER_API_KEY'], { OTHER_API_KEY: placeholder('other') })
    expect(answer(run).status).toBe(403)
    expect(recorder.requests.slice(before)).toEqual([])
  })
})

describe('Node fetch on a reverse route (base URL, no proxy settings)', () => {
  const node = (path: string, token: string): Promise<ClientRun> =>
    runClient(process.execPath, [join(FIXTURES, 'egress-fetch-client.mjs'), path], {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: clientHome,
      API_BASE_URL: `http://127.0.0.1:${proxy.tcpAddress?.port ?? 0}/other`,
      API_TOKEN: token,
    })
  const answer = (run: ClientRun): { status: number; body: string } => {
    expect(run.stdout, run.stderr).not.toBe('')
    return JSON.parse(run.stdout) as { status: number; body: string }
  }

  it('reaches the rule host with the real key; the client knew only the base URL and the placeholder', async () => {
    const before = recorder.requests.length
    const run = await node('/v1/messages?beta=true', placeholder('other'))
    expect(run.stderr).toBe('')
    expect(answer(run).status).toBe(200)
    const seen = recorder.requests.slice(before)
    expect(seen).toHaveLength(1)
    expect(seen[0]?.headers['x-api-key']).toBe(SECRETS.OTHER_KEY)
    expect(seen[0]?.headers.host).toBe('other.egress.test')
    expect(seen[0]?.path).toBe('/v1/messages')
    expect(seen[0]?.query).toBe('beta=true')
  })

  it("refuses another rule's placeholder on the route, and a request holding neither placeholder nor proxy token", async () => {
    const before = recorder.requests.length
    expect(answer(await node('/v1/messages', placeholder('api'))).status).toBe(403)
    // A refusal of any kind (fetch turns a 407 into a network error, reported as status 0).
    expect(answer(await node('/v1/messages', 'not-a-placeholder')).status).not.toBe(200)
    expect(recorder.requests.slice(before)).toEqual([])
  })
})

describe('WebSocket through CONNECT', () => {
  const wsClient = (token: string, send: string[] = ['one', 'two', 'three']): Promise<ClientRun> =>
    runClient(process.execPath, [join(FIXTURES, 'egress-ws-client.mjs')], {
      WS_SEND: JSON.stringify(send),
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: clientHome,
      HTTPS_PROXY: proxyUrl,
      NODE_EXTRA_CA_CERTS: sessionCaFile,
      WS_URL: 'wss://ws.egress.test/echo',
      WS_TOKEN: token,
    })

  it('carries the real credential on the upgrade request and echoes messages both ways', async () => {
    const before = wsEcho.upgrades.length
    const run = await wsClient(placeholder('ws'))
    expect(JSON.parse(run.stdout)).toEqual({ opened: true, echoes: ['one', 'two', 'three'] })
    const upgrades = wsEcho.upgrades.slice(before)
    expect(upgrades).toHaveLength(1)
    expect(upgrades[0]?.headers.authorization).toBe(`Bearer ${SECRETS.WS_TOKEN}`)
    expect(upgrades[0]?.headers.host).toBe('ws.egress.test')
  })

  it('swaps a placeholder inside a text message for the secret, and the echoed secret back for the placeholder', async () => {
    const before = wsEcho.messages.length
    // Over 64 KiB: a 64-bit frame length, read across several TCP chunks (an env string holds at most 128 KiB).
    const big = `${'x'.repeat(70_000)} ${placeholder('ws')} ${'y'.repeat(30_000)}`
    const sent = [`{"type":"auth","token":"${placeholder('ws')}"}`, 'plain', big]
    const run = await wsClient(placeholder('ws'), sent)
    // The client gets its own text back: the upstream's echo of the secret is scrubbed to the placeholder.
    expect(JSON.parse(run.stdout)).toEqual({ opened: true, echoes: sent })
    expect(wsEcho.messages.slice(before)).toEqual(sent.map((m) => m.replace(placeholder('ws'), SECRETS.WS_TOKEN)))
  })

  it("refuses the upgrade with another rule's placeholder", async () => {
    const before = wsEcho.upgrades.length
    const run = await wsClient(placeholder('api'))
    expect(JSON.parse(run.stdout)).toMatchObject({ opened: false, status: 403 })
    expect(wsEcho.upgrades.slice(before)).toEqual([])
  })
})

describe('kubectl against an API server that demands a client certificate', () => {
  async function kubeconfig(token: string): Promise<string> {
    const dir = join(clientHome, '.kube')
    await mkdir(dir, { recursive: true })
    const file = join(dir, 'config')
    // No client certificate here: the proxy presents the one stored on the host.
    const config = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'egress', cluster: { server: 'https://kube.egress.test', 'certificate-authority-data': Buffer.from(proxy.caCertPem).toString('base64') } }],
      users: [{ name: 'sandbox', user: { token } }],
      contexts: [{ name: 'egress', context: { cluster: 'egress', user: 'sandbox' } }],
      'current-context': 'egress',
    }
    await writeFile(file, JSON.stringify(config, null, 2))
    return file
  }
  const kubectl = (args: string[]): Promise<ClientRun> => runClient('kubectl', args, clientEnv())

  it('lists namespaces and reads the version; the API server saw the host-held client certificate and the real token', async () => {
    await kubeconfig(placeholder('kube'))
    const before = kube.requests.length
    const list = await kubectl(['get', 'namespaces', '-o', 'name'])
    expect(list.code, list.stderr).toBe(0)
    expect(list.stdout.trim().split('\n')).toEqual(kube.namespaces.map((n) => `namespace/${n}`))
    const version = await kubectl(['version', '-o', 'json'])
    expect(version.code, version.stderr).toBe(0)
    expect((JSON.parse(version.stdout) as { serverVersion: { gitVersion: string } }).serverVersion.gitVersion).toBe('v1.32.0-egress-test')
    const seen = kube.requests.slice(before)
    expect(seen.map((r) => r.path)).toContain('/api/v1/namespaces')
    for (const r of seen) {
      expect(r.clientCommonName).toBe(pki.clientCommonName)
      expect(r.headers.authorization).toBe(`Bearer ${SECRETS.KUBE_TOKEN}`)
    }
  })

  it("fails with another rule's placeholder as the token, and the API server never sees it", async () => {
    await kubeconfig(placeholder('api'))
    const before = kube.requests.length
    const run = await kubectl(['get', 'namespaces', '-o', 'name', '--request-timeout=10s'])
    expect(run.code).not.toBe(0)
    expect(kube.requests.slice(before)).toEqual([])
    await kubeconfig(placeholder('kube'))
  })
})

describe('the client side never held a secret', () => {
  it('no file the clients wrote (clones, kubeconfig, caches) and no audit event holds a real secret', async () => {
    await expectClientFilesClean()
    const text = JSON.stringify(audit)
    expectNoRealSecret(text, 'the audit events')
    for (const value of proxy.placeholders.values()) expect(text.includes(value)).toBe(false)
  })
})

/** Opens a TLS connection to `host` through the proxy's CONNECT, trusting only the session CA. */
async function tunnel(host: string): Promise<TLSSocket> {
  const address = proxy.tcpAddress
  if (address === null) throw new Error('no tcp listener')
  const raw = await new Promise<Socket>((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port: address.port,
      method: 'CONNECT',
      path: `${host}:443`,
      headers: { host: `${host}:443`, 'proxy-authorization': `Basic ${Buffer.from(`credproxy:${proxyToken}`).toString('base64')}` },
    })
    req.on('connect', (res, socket) => (res.statusCode === 200 ? resolve(socket) : reject(new Error(`CONNECT ${res.statusCode}`))))
    req.on('error', reject)
    req.end()
  })
  return await new Promise<TLSSocket>((resolve, reject) => {
    const tls = tlsConnect({ socket: raw, servername: host, ca: proxy.caCertPem }, () => resolve(tls))
    tls.on('error', reject)
  })
}

function send(socket: Duplex, headers: Record<string, string>, path: string): Promise<IncomingMessage> {
  return new Promise<IncomingMessage>((resolve, reject) => {
    const req = httpRequest({ path, headers: { ...headers, connection: 'keep-alive' }, createConnection: () => socket })
    req.on('response', resolve)
    req.on('error', reject)
    req.end()
  })
}

/**
 * Arrival times of each SSE event, in ms after the request was written on a warm keep-alive connection: one
 * plain request goes first on the same connection (and, through the proxy, warms its upstream pool), so what is
 * compared is the streaming path, not connection setup (the bench measures that).
 */
async function sseArrivals(label: string, socket: Duplex, headers: Record<string, string>, path: string): Promise<number[]> {
  const warm = await send(socket, headers, path.replace(/sse$/, 'warm-up'))
  expect(warm.statusCode, `${label} warm-up: ${JSON.stringify(audit.at(-1))}`).toBe(200)
  warm.resume()
  await new Promise((resolve) => warm.once('end', resolve))
  const started = performance.now()
  const res = await send(socket, headers, path)
  expect(res.statusCode, `${label}: ${JSON.stringify(audit.at(-1))}`).toBe(200)
  const arrivals: number[] = []
  let buffered = ''
  for await (const chunk of res) {
    buffered += (chunk as Buffer).toString()
    let end: number
    while ((end = buffered.indexOf('\n\n')) !== -1) {
      buffered = buffered.slice(end + 2)
      arrivals.push(performance.now() - started)
    }
  }
  socket.destroy()
  return arrivals
}

function connected<T extends Duplex>(socket: T, event: 'connect' | 'secureConnect'): Promise<T> {
  return new Promise((resolve, reject) => {
    socket.once(event, () => resolve(socket))
    socket.once('error', reject)
  })
}

describe('streaming', () => {
  it(`server-sent events arrive one by one; the first within ${MAX_SSE_FIRST_EVENT_DELAY_MS} ms of the direct path`, async () => {
    const auth = `Bearer ${placeholder('api')}`
    const directSocket = await connected(tlsConnect({ host: '127.0.0.1', port: recorder.port, servername: 'api.egress.test', ca: pki.caPem }), 'secureConnect')
    const direct = await sseArrivals('direct', directSocket, { host: 'api.egress.test', authorization: `Bearer ${SECRETS.API_TOKEN}` }, '/sse')
    const intercepted = await sseArrivals('CONNECT', await tunnel('api.egress.test'), { host: 'api.egress.test', authorization: auth }, '/sse')
    const routeSocket = await connected(netConnect({ host: '127.0.0.1', port: proxy.tcpAddress?.port ?? 0 }), 'connect')
    const routed = await sseArrivals('route', routeSocket, { host: `127.0.0.1:${proxy.tcpAddress?.port ?? 0}`, authorization: auth }, '/api/sse')
    for (const arrivals of [direct, intercepted, routed]) {
      expect(arrivals).toHaveLength(SSE_EVENTS)
      // Buffering would bunch the events at the end of the stream.
      for (let i = 1; i < arrivals.length; i++) expect((arrivals[i] ?? 0) - (arrivals[i - 1] ?? 0)).toBeGreaterThan(SSE_INTERVAL_MS / 2)
    }
    const firsts = `first event (ms): direct ${direct[0]?.toFixed(1)}, CONNECT ${intercepted[0]?.toFixed(1)}, route ${routed[0]?.toFixed(1)}`
    expect((intercepted[0] ?? Infinity) - (direct[0] ?? 0), firsts).toBeLessThan(MAX_SSE_FIRST_EVENT_DELAY_MS)
    expect((routed[0] ?? Infinity) - (direct[0] ?? 0), firsts).toBeLessThan(MAX_SSE_FIRST_EVENT_DELAY_MS)
  })

  it('streams a 1 GiB upload from curl with proxy RSS growth under 64 MiB', { timeout: 300_000 }, async () => {
    // The sink runs in its own process, so what grows here is the proxy (and this test's small bookkeeping).
    const sink = fork(join(FIXTURES, 'egress-upstream-child.ts'), [pki.dir], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    const nextMessage = (): Promise<Record<string, number>> => new Promise((resolve) => sink.once('message', (m) => resolve(m as Record<string, number>)))
    const sinkPort = (await nextMessage())['port']
    const uploadRule = rule({ name: 'upload', hosts: ['api.egress.test'], credential: { key: 'API_TOKEN' }, inject: { header: 'authorization', format: 'Bearer {}' }, upstream: `127.0.0.1:${sinkPort}`, ca: pki.caFile })
    const uploadProxy = await startEgressProxy({
      session: 'upload-test',
      rules: [uploadRule],
      grantedRules: () => new Set(['upload']),
      credentials: { apiKey: () => Promise.resolve(SECRETS.API_TOKEN), accessToken: () => Promise.resolve(null) },
      audit: () => undefined,
      tcp: { host: '127.0.0.1', port: 0 },
      proxyToken,
    })
    const file = join(work, 'one-gib.bin')
    // A sparse file: curl reads 1 GiB of zeros, the disk holds nothing.
    const handle = await open(file, 'w')
    await handle.truncate(GIB)
    await handle.close()
    const caFile = join(work, 'upload-ca.pem')
    await writeFile(caFile, uploadProxy.caCertPem)
    const baseline = process.memoryUsage().rss
    let peak = baseline
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 25)
    try {
      const upload = `http://credproxy:${proxyToken}@127.0.0.1:${uploadProxy.tcpAddress?.port ?? 0}`
      const run = await runClient(
        'curl',
        ['-sS', '--max-time', '280', '-w', '\n%{http_code}', '-T', file, '-H', `authorization: Bearer ${uploadProxy.placeholders.get('upload') ?? ''}`, 'https://api.egress.test/upload'],
        clientEnv({ CURL_CA_BUNDLE: caFile, HTTPS_PROXY: upload, https_proxy: upload }),
      )
      expect(run.stderr).toBe('')
      expect(run.stdout.trim().split('\n').pop()).toBe('200')
      sink.send('last-upload')
      expect((await nextMessage())['bytes']).toBe(GIB)
    } finally {
      clearInterval(sampler)
      await uploadProxy.close()
      sink.disconnect()
    }
    expect(peak - baseline, `RSS grew ${((peak - baseline) / 2 ** 20).toFixed(1)} MiB`).toBeLessThan(MAX_UPLOAD_RSS_GROWTH_BYTES)
  })
})
