// Local HTTPS upstreams for the egress proxy's real-client tests and bench: each listens on 127.0.0.1 port 0
// with a certificate from a throwaway test CA, and records what it received so a test can check that the real
// credential (never the placeholder) arrived.
import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TLSSocket } from 'node:tls'
import { WebSocketServer } from 'ws'

/** Names every test upstream certificate carries: clients reach them through the proxy under these names. */
export const UPSTREAM_NAMES = [
  'api.egress.test',
  'other.egress.test',
  'query.egress.test',
  'oauth.egress.test',
  'git.egress.test',
  'ws.egress.test',
  'kube.egress.test',
  'localhost',
] as const

export interface TestPki {
  dir: string
  /** The CA that signed every server certificate (a rule's `ca`, or a direct client's trust). */
  caFile: string
  caPem: string
  serverCertPem: string
  serverKeyPem: string
  /** The CA the mTLS upstream trusts for client certificates, and one client certificate it signed. */
  clientCaPem: string
  clientCertPem: string
  clientKeyPem: string
  /** Subject CN of the client certificate (what the mTLS upstream records). */
  clientCommonName: string
  cleanup(): Promise<void>
}

async function run(cmd: string, args: string[], cwd: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    child.on('error', reject)
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} exited ${String(code)}: ${stderr}`)),
    )
  })
}

const CLIENT_COMMON_NAME = 'credproxy-egress-test-client'
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']

/** A test CA, a server certificate for UPSTREAM_NAMES + 127.0.0.1, and a client CA + client certificate (openssl CLI). */
export async function makeTestPki(): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), 'egress-pki-'))
  const caExt = ['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']
  await run('openssl', ['req', '-x509', '-new', ...EC, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=egress test upstream CA', ...caExt], dir)
  await run('openssl', ['req', '-x509', '-new', ...EC, '-keyout', 'client-ca.key', '-out', 'client-ca.pem', '-days', '2', '-subj', '/CN=egress test client CA', ...caExt], dir)
  const san = [...UPSTREAM_NAMES.map((n) => `DNS:${n}`), 'IP:127.0.0.1'].join(',')
  const leafExt = (usage: string, altNames: string | null): string =>
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      `extendedKeyUsage=${usage}`,
      'subjectKeyIdentifier=hash',
      'authorityKeyIdentifier=keyid',
      ...(altNames === null ? [] : [`subjectAltName=${altNames}`]),
    ].join('\n') + '\n'
  await writeFile(join(dir, 'server.ext'), leafExt('serverAuth', san))
  await writeFile(join(dir, 'client.ext'), leafExt('clientAuth', null))
  await run('openssl', ['req', '-new', ...EC, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=egress test upstream'], dir)
  await run('openssl', ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'server.ext', '-out', 'server.pem'], dir)
  await run('openssl', ['req', '-new', ...EC, '-keyout', 'client.key', '-out', 'client.csr', '-subj', `/O=system:masters/CN=${CLIENT_COMMON_NAME}`], dir)
  await run('openssl', ['x509', '-req', '-in', 'client.csr', '-CA', 'client-ca.pem', '-CAkey', 'client-ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'client.ext', '-out', 'client.pem'], dir)
  return loadTestPki(dir)
}

/** The PKI makeTestPki wrote into `dir` (a bench child process reads it back). */
export async function loadTestPki(dir: string): Promise<TestPki> {
  const read = (name: string): Promise<string> => readFile(join(dir, name), 'utf8')
  return {
    dir,
    caFile: join(dir, 'ca.pem'),
    caPem: await read('ca.pem'),
    serverCertPem: await read('server.pem'),
    serverKeyPem: await read('server.key'),
    clientCaPem: await read('client-ca.pem'),
    clientCertPem: await read('client.pem'),
    clientKeyPem: await read('client.key'),
    clientCommonName: CLIENT_COMMON_NAME,
    cleanup: () => rm(dir, { recursive: true, force: true }),
  }
}

export interface RecordedRequest {
  method: string
  path: string
  /** The raw query string without '?', '' when none. */
  query: string
  headers: IncomingHttpHeaders
}

export interface Upstream {
  port: number
  close(): Promise<void>
}

function listen(server: HttpsServer): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port))
  })
}

function closeServer(server: HttpsServer): Promise<void> {
  server.closeAllConnections()
  return new Promise((resolve) => server.close(() => resolve()))
}

function record(req: IncomingMessage): RecordedRequest {
  const url = req.url ?? '/'
  const q = url.indexOf('?')
  return {
    method: req.method ?? '',
    path: q === -1 ? url : url.slice(0, q),
    query: q === -1 ? '' : url.slice(q + 1),
    headers: { ...req.headers },
  }
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers })
  res.end(text)
}

export const SSE_EVENTS = 5
export const SSE_INTERVAL_MS = 200

export interface Recorder extends Upstream {
  /** Every request received, in order (the upload sink records its headers, never its body). */
  requests: RecordedRequest[]
  /** `/needs-token` answers 401 until the Authorization header is exactly `Bearer ${acceptedToken}`. */
  acceptedToken: string
  /** Bytes counted by the last finished `/upload` request. */
  lastUploadBytes: number
}

/**
 * The HTTPS recorder (`record: false` keeps nothing, for benches). Endpoints:
 * - `/sse`: text/event-stream, SSE_EVENTS events SSE_INTERVAL_MS apart (the first after one interval);
 * - `/upload`: any method, counts the body's bytes without keeping them, answers `{ bytes }`;
 * - `/echo-auth`: echoes the Authorization header in a response header and in the JSON body (response hygiene);
 * - `/needs-token`: 401 with WWW-Authenticate until the token matches `acceptedToken`;
 * - anything else: 200 JSON `{ ok, method, path, query }` (the body is drained first).
 */
export async function startRecorder(pki: TestPki, options: { record?: boolean } = {}): Promise<Recorder> {
  const keep = options.record !== false
  const state: Recorder = {
    port: 0,
    requests: [],
    acceptedToken: '',
    lastUploadBytes: 0,
    close: () => closeServer(server),
  }
  const server: HttpsServer = createHttpsServer({ cert: pki.serverCertPem, key: pki.serverKeyPem, keepAliveTimeout: 30_000 }, (req, res) => {
    const rec = record(req)
    // A bench sends millions of requests: it turns recording off.
    if (keep) state.requests.push(rec)
    if (rec.path === '/upload') {
      let bytes = 0
      req.on('data', (chunk: Buffer) => (bytes += chunk.length))
      req.on('end', () => {
        state.lastUploadBytes = bytes
        json(res, 200, { bytes })
      })
      return
    }
    req.resume()
    req.on('end', () => {
      if (rec.path === '/sse') {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
        let sent = 0
        const timer = setInterval(() => {
          sent += 1
          res.write(`id: ${sent}\ndata: {"n":${sent}}\n\n`)
          if (sent === SSE_EVENTS) {
            clearInterval(timer)
            res.end()
          }
        }, SSE_INTERVAL_MS)
        res.on('close', () => clearInterval(timer))
        return
      }
      if (rec.path === '/echo-auth') {
        const auth = req.headers.authorization ?? ''
        json(res, 200, { authorization: auth, note: `you sent ${auth}` }, { 'x-echo-authorization': auth })
        return
      }
      if (rec.path === '/needs-token') {
        if (req.headers.authorization === `Bearer ${state.acceptedToken}`) json(res, 200, { ok: true })
        else json(res, 401, { error: 'invalid_token' }, { 'www-authenticate': 'Bearer error="invalid_token"' })
        return
      }
      json(res, 200, { ok: true, method: rec.method, path: rec.path, query: rec.query })
    })
  })
  state.port = await listen(server)
  return state
}

export interface GitServer extends Upstream {
  /** Clone URL path on the server: `/repo.git`. */
  repoPath: string
  /** The bare repository on disk (to check what a push wrote). */
  bareDir: string
  /** Every request with its Authorization header and whether it was let in. */
  requests: Array<RecordedRequest & { authorized: boolean }>
}

async function git(args: string[], cwd: string): Promise<void> {
  await run('git', ['-c', 'user.name=test', '-c', 'user.email=test@example.invalid', '-c', 'init.defaultBranch=main', ...args], cwd)
}

/**
 * git smart HTTP over HTTPS: `git http-backend` as CGI behind Basic auth (`user` ignored, `password` required),
 * on a bare repository holding one commit on `main` with README.md. Push is enabled.
 */
export async function startGitServer(pki: TestPki, password: string): Promise<GitServer> {
  const root = await mkdtemp(join(tmpdir(), 'egress-git-'))
  const seed = join(root, 'seed')
  await mkdir(seed)
  await git(['init', '-q'], seed)
  await writeFile(join(seed, 'README.md'), 'hello from the egress git upstream\n')
  await git(['add', 'README.md'], seed)
  await git(['commit', '-q', '-m', 'initial'], seed)
  const projectRoot = join(root, 'srv')
  await mkdir(projectRoot)
  await git(['clone', '-q', '--bare', seed, join(projectRoot, 'repo.git')], root)
  await git(['config', 'http.receivepack', 'true'], join(projectRoot, 'repo.git'))
  const requests: GitServer['requests'] = []
  const server = createHttpsServer({ cert: pki.serverCertPem, key: pki.serverKeyPem }, (req, res) => {
    const rec = record(req)
    const header = req.headers.authorization ?? ''
    const decoded = header.startsWith('Basic ') ? Buffer.from(header.slice(6), 'base64').toString() : ''
    const colon = decoded.indexOf(':')
    const authorized = colon !== -1 && decoded.slice(colon + 1) === password
    requests.push({ ...rec, authorized })
    if (!authorized) {
      req.resume()
      res.writeHead(401, { 'www-authenticate': 'Basic realm="egress-test-git"', 'content-type': 'text/plain' })
      res.end('authentication required\n')
      return
    }
    const env: NodeJS.ProcessEnv = {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      GIT_PROJECT_ROOT: projectRoot,
      GIT_HTTP_EXPORT_ALL: '1',
      REMOTE_USER: decoded.slice(0, colon) || 'git',
      REMOTE_ADDR: '127.0.0.1',
      GATEWAY_INTERFACE: 'CGI/1.1',
      SERVER_PROTOCOL: 'HTTP/1.1',
      REQUEST_METHOD: rec.method,
      PATH_INFO: decodeURIComponent(rec.path),
      QUERY_STRING: rec.query,
      CONTENT_TYPE: req.headers['content-type'] ?? '',
    }
    if (req.headers['content-length'] !== undefined) env['CONTENT_LENGTH'] = req.headers['content-length']
    if (req.headers['content-encoding'] !== undefined) env['HTTP_CONTENT_ENCODING'] = req.headers['content-encoding']
    const gitProtocol = req.headers['git-protocol']
    if (typeof gitProtocol === 'string') env['GIT_PROTOCOL'] = gitProtocol
    const cgi = spawn('/usr/lib/git-core/git-http-backend', [], { env, stdio: ['pipe', 'pipe', 'pipe'] })
    req.pipe(cgi.stdin)
    cgi.stdin.on('error', () => undefined)
    cgi.stderr.resume()
    // CGI output: header lines, a blank line, then the body (streamed through untouched).
    let head = Buffer.alloc(0)
    let headersDone = false
    cgi.stdout.on('data', (chunk: Buffer) => {
      if (headersDone) {
        res.write(chunk)
        return
      }
      head = Buffer.concat([head, chunk])
      const text = head.toString('latin1')
      let end = text.indexOf('\r\n\r\n')
      let sep = 4
      if (end === -1) {
        end = text.indexOf('\n\n')
        sep = 2
      }
      if (end === -1) return
      headersDone = true
      let status = 200
      const headers: Record<string, string> = {}
      for (const line of text.slice(0, end).split(/\r?\n/)) {
        const i = line.indexOf(':')
        if (i === -1) continue
        const name = line.slice(0, i).trim().toLowerCase()
        const value = line.slice(i + 1).trim()
        if (name === 'status') status = Number.parseInt(value, 10)
        else headers[name] = value
      }
      res.writeHead(status, headers)
      res.write(head.subarray(end + sep))
    })
    cgi.on('close', () => {
      if (!headersDone) res.writeHead(502).end('git-http-backend produced no headers\n')
      else res.end()
    })
  })
  const port = await listen(server)
  return {
    port,
    repoPath: '/repo.git',
    bareDir: join(projectRoot, 'repo.git'),
    requests,
    close: async () => {
      await closeServer(server)
      await rm(root, { recursive: true, force: true })
    },
  }
}

export interface WebSocketEcho extends Upstream {
  /** Headers of every upgrade request that reached the WebSocket server. */
  upgrades: RecordedRequest[]
  /** Every text message received, as the server read it. */
  messages: string[]
}

/** A WebSocket echo over HTTPS (any path): every text or binary message comes back unchanged. */
export async function startWebSocketEcho(pki: TestPki): Promise<WebSocketEcho> {
  const upgrades: RecordedRequest[] = []
  const messages: string[] = []
  const server = createHttpsServer({ cert: pki.serverCertPem, key: pki.serverKeyPem }, (_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain' }).end('websocket only\n')
  })
  const wss = new WebSocketServer({ server })
  wss.on('connection', (socket, req) => {
    upgrades.push(record(req))
    socket.on('message', (data, isBinary) => {
      if (!isBinary) messages.push(Buffer.isBuffer(data) ? data.toString() : Buffer.concat(data as Buffer[]).toString())
      socket.send(data, { binary: isBinary })
    })
  })
  const port = await listen(server)
  return {
    port,
    upgrades,
    messages,
    close: async () => {
      for (const client of wss.clients) client.terminate()
      await new Promise<void>((resolve) => wss.close(() => resolve()))
      await closeServer(server)
    },
  }
}

export interface KubeApi extends Upstream {
  /** Every request with the subject CN of the client certificate it came with. */
  requests: Array<RecordedRequest & { clientCommonName: string }>
  /** Namespaces `kubectl get namespaces` lists. */
  namespaces: string[]
}

const KUBE_VERSION = {
  major: '1',
  minor: '32',
  gitVersion: 'v1.32.0-egress-test',
  gitCommit: '0000000000000000000000000000000000000000',
  gitTreeState: 'clean',
  buildDate: '2026-01-01T00:00:00Z',
  goVersion: 'go1.23.0',
  compiler: 'gc',
  platform: 'linux/amd64',
}

const NAMESPACES_RESOURCE = {
  name: 'namespaces',
  singularName: 'namespace',
  namespaced: false,
  kind: 'Namespace',
  verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
  shortNames: ['ns'],
}

/**
 * A minimal Kubernetes API server that demands a client certificate signed by the test client CA (the TLS
 * handshake fails without one). Serves discovery (/api, /api/v1, /apis), /version and the namespace list.
 */
export async function startKubeApi(pki: TestPki): Promise<KubeApi> {
  const requests: KubeApi['requests'] = []
  const namespaces = ['default', 'kube-system', 'egress-test']
  const server = createHttpsServer(
    { cert: pki.serverCertPem, key: pki.serverKeyPem, ca: pki.clientCaPem, requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      const rec = record(req)
      const peer = (req.socket as TLSSocket).getPeerCertificate()
      const cn = peer.subject.CN
      requests.push({ ...rec, clientCommonName: Array.isArray(cn) ? cn.join(',') : (cn ?? '') })
      req.resume()
      switch (rec.path) {
        case '/version':
          return json(res, 200, KUBE_VERSION)
        case '/api':
          return json(res, 200, {
            kind: 'APIVersions',
            versions: ['v1'],
            serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: '127.0.0.1:443' }],
          })
        case '/apis':
          return json(res, 200, { kind: 'APIGroupList', apiVersion: 'v1', groups: [] })
        case '/api/v1':
          return json(res, 200, { kind: 'APIResourceList', groupVersion: 'v1', resources: [NAMESPACES_RESOURCE] })
        case '/api/v1/namespaces':
          return json(res, 200, {
            kind: 'NamespaceList',
            apiVersion: 'v1',
            metadata: { resourceVersion: '1' },
            items: namespaces.map((name, i) => ({
              metadata: { name, uid: `00000000-0000-0000-0000-00000000000${i}`, resourceVersion: '1', creationTimestamp: '2026-01-01T00:00:00Z' },
              spec: { finalizers: ['kubernetes'] },
              status: { phase: 'Active' },
            })),
          })
        default:
          return json(res, 404, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404 })
      }
    },
  )
  const port = await listen(server)
  return { port, requests, namespaces, close: () => closeServer(server) }
}
