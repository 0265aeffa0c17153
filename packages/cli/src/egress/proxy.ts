// The host egress proxy of one session. Listens on a Unix socket (and optionally
// 127.0.0.1 behind a proxy token) and serves absolute-URL HTTP, CONNECT and
// reverse routes. Hosts with a granted rule are intercepted (TLS terminated with a
// session leaf, the credential injected, forwarded over verified TLS); allowed
// hosts without a rule are tunnelled untouched; everything else is refused.
import { chmod, readFile, unlink } from 'node:fs/promises'
import {
  constants as http2Constants,
  createServer as createHttp2Server,
  type ClientHttp2Stream,
  type ServerHttp2Stream,
} from 'node:http2'
import { createServer, ServerResponse, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type Server } from 'node:http'
import { connect as netConnect, isIP, type AddressInfo, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { TLSSocket } from 'node:tls'
import { timingSafeEqual } from 'node:crypto'
import { SessionCa } from './ca.js'
import { guardedLookup, isBlockedAddress, TokenBucket } from './guards.js'
import { checkPlaceholders, injectCredential, isSafeHeaderSecret, stripHopByHop, type Refusal } from './inject.js'
import { PLACEHOLDER_LOOKALIKE, PlaceholderSet } from './placeholders.js'
import { scrubBuffer, scrubHeaders, SecretScrubber, secretForms } from './response-hygiene.js'
import { findRule, hostMatches, type EgressRule } from './rules.js'
import type { EgressAuditEvent, EgressConnectionLimits, EgressProxy, EgressProxyOptions } from './types.js'
import { UpstreamPool, upstreamFailureReason, type UpstreamTarget } from './upstream.js'
import { relayUpgradedSocket } from './websocket-relay.js'
import { relayH2Response, streamOf, waitForResponse } from './http2-relay.js'

/** Request bodies up to this size are held in memory so a request can be resent (401 refresh, stale connection). */
export const MAX_REPLAY_BODY_BYTES = 64 * 1024
/** Injected responses with a declared length up to this are scrubbed whole, keeping an exact Content-Length. */
export const MAX_SCRUB_BUFFER_BYTES = 64 * 1024
/** Longest path written to the audit log. */
const MAX_AUDIT_PATH_CHARS = 256
/** An intercepted CONNECT must finish its TLS handshake within this (ms); the socket has left the HTTP server's timeouts. */
export const INTERCEPT_HANDSHAKE_TIMEOUT_MS = 10_000
/** Tunnels, intercepted connections and WebSockets with no byte either way for this long (ms) are closed. */
export const CONNECTION_IDLE_TIMEOUT_MS = 600_000
/** Client connections open at once per listener (each tunnel also holds one upstream descriptor). */
export const MAX_CLIENT_CONNECTIONS = 1024
/** Upstream targets remembered per rule and destination (a wildcard rule can name many hosts). */
const MAX_CACHED_TARGETS = 10_000
const PLACEHOLDER_LOOKALIKE_ALL = new RegExp(PLACEHOLDER_LOOKALIKE.source, 'g')
const PROXY_USER = 'credproxy'

interface Destination {
  scheme: 'https' | 'http'
  host: string
  port: number
}

interface ListenerContext {
  /** true on the TCP listener: absolute-URL and CONNECT need the proxy token. */
  tcp: boolean
}

function auditPath(path: string): string {
  const bare = path.split('?')[0] ?? ''
  return bare.replace(PLACEHOLDER_LOOKALIKE_ALL, '<placeholder>').slice(0, MAX_AUDIT_PATH_CHARS)
}

/** Longest host name DNS allows (RFC 1035), in characters; longer ones are refused before any use or audit. */
export const MAX_HOST_CHARS = 253
/** Longest DNS label, in characters. */
export const MAX_HOST_LABEL_CHARS = 63

/** host and port of an authority (`host:port`, `[v6]:port`), lower-cased; null when malformed or longer than DNS allows. */
export function parseAuthority(authority: string, defaultPort: number): { host: string; port: number } | null {
  // Checked before the regex: a 16 KiB name must not reach the parser, a cache key or an audit line.
  if (authority.length > MAX_HOST_CHARS + 8) return null
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/.exec(authority.trim())
  if (match === null) return null
  const host = (match[1] ?? match[2] ?? '').toLowerCase().replace(/\.$/, '')
  const port = match[3] === undefined ? defaultPort : Number(match[3])
  if (host === '' || port < 1 || port > 65_535) return null
  if (host.length > MAX_HOST_CHARS || host.split('.').some((label) => label.length > MAX_HOST_LABEL_CHARS)) return null
  return { host, port }
}

/** What to do when a rule's credential is not stored on the host (names only, never a value). */
function missingHint(rule: EgressRule): string {
  const credential = rule.credential
  return 'key' in credential
    ? `No API key ${credential.key} is stored on the host for egress rule ${rule.name}: run \`credproxy key set ${credential.key}\` on the host.`
    : `No OAuth token for ${credential.oauth}/${credential.bucket} is stored on the host for egress rule ${rule.name}: run \`credproxy auth login ${credential.oauth}${credential.bucket === 'default' ? '' : ` --bucket ${credential.bucket}`}\` on the host.`
}

function hasBody(headers: IncomingHttpHeaders): boolean {
  return headers['transfer-encoding'] !== undefined || (headers['content-length'] !== undefined && headers['content-length'] !== '0')
}

function readSmallBody(stream: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let ended = false
    stream.on('data', (chunk: Buffer) => chunks.push(chunk))
    stream.once('end', () => {
      ended = true
      resolve(chunks.length === 1 && chunks[0] !== undefined ? chunks[0] : Buffer.concat(chunks))
    })
    stream.once('error', reject)
    // A client that goes away mid-body ends the wait (the Error only then: its stack trace is not free).
    stream.once('close', () => {
      if (!ended) reject(new Error('closed before the end of the body'))
    })
  })
}

class Engine {
  readonly ca: SessionCa
  readonly placeholders: PlaceholderSet
  readonly #options: EgressProxyOptions
  readonly #pool = new UpstreamPool()
  readonly #ruleCa = new Map<string, string>()
  readonly #buckets = new Map<string, TokenBucket>()
  readonly #targets = new Map<string, UpstreamTarget>()
  readonly #expectedAuth: Buffer | null
  readonly #intercepted = new WeakMap<Duplex, Destination>()
  readonly #openSockets = new Set<Duplex>()
  readonly limits: EgressConnectionLimits
  readonly interceptServer: Server

  constructor(options: EgressProxyOptions, ca: SessionCa, ruleCa: Map<string, string>) {
    this.#options = options
    this.limits = {
      handshakeTimeoutMs: options.limits?.handshakeTimeoutMs ?? INTERCEPT_HANDSHAKE_TIMEOUT_MS,
      idleTimeoutMs: options.limits?.idleTimeoutMs ?? CONNECTION_IDLE_TIMEOUT_MS,
      maxConnections: options.limits?.maxConnections ?? MAX_CLIENT_CONNECTIONS,
    }
    this.ca = ca
    this.placeholders = new PlaceholderSet(options.rules)
    this.#ruleCa = ruleCa
    this.#expectedAuth =
      options.proxyToken === undefined ? null : Buffer.from(`Basic ${Buffer.from(`${PROXY_USER}:${options.proxyToken}`).toString('base64')}`)
    for (const rule of options.rules) {
      if (rule.rateLimit !== undefined) this.#buckets.set(rule.name, new TokenBucket(rule.rateLimit.perSecond, rule.rateLimit.burst))
    }
    this.interceptServer = this.#createServer({ tcp: false }, true)
  }

  #createServer(context: ListenerContext, intercept = false): Server {
    const server = createServer({ requestTimeout: 0, headersTimeout: 60_000, keepAliveTimeout: 30_000 })
    const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
      const handled = intercept ? this.#onInterceptedRequest(req, res) : this.#onListenerRequest(req, res, context)
      handled.catch(() => this.#fail(req, res))
    }
    server.on('request', onRequest)
    // Expect: 100-continue is forwarded: the client's body waits for the upstream's 100.
    server.on('checkContinue', onRequest)
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      // The server stops watching a socket it hands over: a reset must not become an uncaught 'error'.
      socket.on('error', () => socket.destroy())
      this.#track(socket)
      const handled = intercept ? this.#onInterceptedUpgrade(req, socket, head) : this.#onListenerUpgrade(req, socket, head, context)
      handled.catch(() => socket.destroy())
    })
    if (!intercept) {
      server.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
        socket.on('error', () => socket.destroy())
        this.#track(socket)
        this.#closeWhenIdle(socket)
        this.#onConnect(req, socket, head, context).catch(() => socket.destroy())
      })
    }
    server.on('connection', (socket: Socket) => this.#track(socket))
    server.on('clientError', (_error, socket: Duplex) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n')
      else socket.destroy()
    })
    return server
  }

  createListener(context: ListenerContext): Server {
    const server = this.#createServer(context)
    // Tunnels and intercepted connections stay counted until they close: a sandbox cannot exhaust the host's descriptors.
    server.maxConnections = this.limits.maxConnections
    server.on('drop', () => {
      this.#audit({ method: '-', host: '', path: '', status: 503, bytesIn: 0, bytesOut: 0, durationMs: 0, injected: false, reason: 'too-many-connections' })
    })
    return server
  }

  /** Close `socket` after `idleTimeoutMs` without a byte either way (a net.Socket carries every byte of its wrappers). */
  #closeWhenIdle(socket: Duplex): void {
    if (socket instanceof TLSSocket || !('setTimeout' in socket) || typeof socket.setTimeout !== 'function') return
    ;(socket as Socket).setTimeout(this.limits.idleTimeoutMs, () => socket.destroy())
  }

  #track(socket: Duplex): void {
    if (this.#openSockets.has(socket)) return
    this.#openSockets.add(socket)
    socket.once('close', () => this.#openSockets.delete(socket))
  }

  #granted(): ReadonlySet<string> {
    return this.#options.grantedRules()
  }

  #ruleFor(host: string): EgressRule | undefined {
    return findRule(this.#options.rules, this.#granted(), host)
  }

  #isAllowedHost(host: string): boolean {
    return (this.#options.allowedHosts ?? []).some((pattern) => hostMatches(pattern.toLowerCase(), host))
  }

  #proxyAuthorized(req: IncomingMessage, context: ListenerContext): boolean {
    if (!context.tcp) return true
    const given = req.headers['proxy-authorization']
    if (this.#expectedAuth === null || typeof given !== 'string') return false
    const buffer = Buffer.from(given.trim())
    return buffer.length === this.#expectedAuth.length && timingSafeEqual(buffer, this.#expectedAuth)
  }

  #audit(event: Omit<EgressAuditEvent, 'session'>): void {
    try {
      this.#options.audit({ session: this.#options.session, ...event, path: auditPath(event.path) })
    } catch {
      // The audit sink must not break the request path.
    }
  }

  #refuse(res: ServerResponse, req: IncomingMessage, dest: { host: string }, path: string, refusal: Refusal & { rule?: string; hint?: string }, started: number): void {
    const body = `credproxy egress: refused (${refusal.reason})\n${refusal.hint === undefined ? '' : `${refusal.hint}\n`}`
    const headers: OutgoingHttpHeaders = { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) }
    if (refusal.status === 407) headers['proxy-authenticate'] = `Basic realm="${PROXY_USER}"`
    if (refusal.status === 429 && 'retryAfter' in refusal) headers['retry-after'] = String(refusal.retryAfter)
    if (!res.headersSent) res.writeHead(refusal.status, headers)
    res.end(body)
    // A refused request body is not read: close the connection instead of draining it.
    if (hasBody(req.headers) && !req.complete) res.once('finish', () => req.socket.destroySoon())
    this.#audit({
      ...(refusal.rule === undefined ? {} : { rule: refusal.rule }),
      method: req.method ?? '',
      host: dest.host,
      path,
      status: refusal.status,
      bytesIn: 0,
      bytesOut: 0,
      durationMs: performance.now() - started,
      injected: false,
      reason: refusal.reason,
    })
  }

  /** A bug or an unexpected failure: 502 (or a cut connection), and an audit line saying so. */
  #fail(req: IncomingMessage, res: ServerResponse): void {
    if (!res.headersSent) {
      res.writeHead(502, { 'content-type': 'text/plain; charset=utf-8' })
      res.end('credproxy egress: internal error\n')
    } else {
      res.destroy()
    }
    this.#audit({ method: req.method ?? '', host: '', path: req.url ?? '', status: 502, bytesIn: 0, bytesOut: 0, durationMs: 0, injected: false, reason: 'internal-error' })
  }

  // ---- entry points -------------------------------------------------------

  async #onListenerRequest(req: IncomingMessage, res: ServerResponse, context: ListenerContext): Promise<void> {
    const started = performance.now()
    const url = req.url ?? '/'
    if (/^https?:\/\//i.test(url)) {
      let parsed: URL
      try {
        parsed = new URL(url)
      } catch {
        this.#refuse(res, req, { host: '' }, '', { status: 400, reason: 'bad-url' }, started)
        return
      }
      const dest = parseAuthority(parsed.host, parsed.protocol === 'https:' ? 443 : 80)
      const path = `${parsed.pathname}${parsed.search}`
      if (dest === null) {
        this.#refuse(res, req, { host: '' }, path, { status: 400, reason: 'bad-url' }, started)
        return
      }
      if (!this.#proxyAuthorized(req, context)) {
        this.#refuse(res, req, dest, path, { status: 407, reason: 'proxy-auth-required' }, started)
        return
      }
      const mismatch = this.#hostMismatch(req, dest.host, dest.port, parsed.protocol === 'https:' ? 443 : 80)
      if (mismatch) {
        this.#refuse(res, req, dest, path, { status: 403, reason: 'host-mismatch' }, started)
        return
      }
      const rule = this.#ruleFor(dest.host)
      // A rule host is always reached over TLS, also when the client asked for plain http.
      const scheme: 'https' | 'http' = rule !== undefined ? 'https' : parsed.protocol === 'https:' ? 'https' : 'http'
      const port = rule !== undefined && parsed.protocol === 'http:' && parsed.port === '' ? 443 : dest.port
      await this.#forward(req, res, { scheme, host: dest.host, port }, path, rule, { requirePlaceholder: false }, started)
      return
    }
    const routed = this.#route(url)
    if (routed === null) {
      this.#refuse(res, req, { host: '' }, url, { status: 404, reason: 'no-route' }, started)
      return
    }
    const { rule, path } = routed
    const host = rule.hosts[0] ?? ''
    if (!this.#granted().has(rule.name)) {
      this.#refuse(res, req, { host }, path, { status: 403, reason: 'rule-not-granted', rule: rule.name }, started)
      return
    }
    // On the TCP listener a route needs the proxy token or the rule's placeholder: a local process holding neither gets nothing.
    const requirePlaceholder = context.tcp && !this.#proxyAuthorized(req, context)
    await this.#forward(req, res, { scheme: 'https', host, port: 443 }, path, rule, { requirePlaceholder }, started)
  }

  #route(url: string): { rule: EgressRule; path: string } | null {
    for (const rule of this.#options.rules) {
      if (rule.route === undefined) continue
      if (url === rule.route || url.startsWith(`${rule.route}/`) || url.startsWith(`${rule.route}?`)) {
        const rest = url.slice(rule.route.length)
        return { rule, path: rest === '' ? '/' : rest.startsWith('?') ? `/${rest}` : rest }
      }
    }
    return null
  }

  /** true when the client's Host header names another destination than the one decided (URL or CONNECT target). */
  #hostMismatch(req: IncomingMessage, host: string, port: number, defaultPort: number): boolean {
    const given = req.headers.host
    if (given === undefined) return false
    const parsed = parseAuthority(given, defaultPort)
    return parsed === null || parsed.host !== host || parsed.port !== port
  }

  async #onInterceptedRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now()
    const dest = this.#intercepted.get(req.socket)
    if (dest === undefined) {
      res.destroy()
      return
    }
    let path = req.url ?? '/'
    if (/^https?:\/\//i.test(path)) {
      // Absolute form inside the tunnel: allowed only for the CONNECT target itself.
      const parsed = URL.canParse(path) ? new URL(path) : null
      const authority = parsed === null ? null : parseAuthority(parsed.host, 443)
      if (authority === null || authority.host !== dest.host || authority.port !== dest.port) {
        this.#refuse(res, req, dest, '', { status: 403, reason: 'host-mismatch' }, started)
        return
      }
      path = `${parsed?.pathname ?? '/'}${parsed?.search ?? ''}`
    }
    if (this.#hostMismatch(req, dest.host, dest.port, 443)) {
      this.#refuse(res, req, dest, path, { status: 403, reason: 'host-mismatch' }, started)
      return
    }
    // Grants are checked per request: a rule revoked mid-connection stops injecting at once.
    const rule = this.#ruleFor(dest.host)
    if (rule === undefined) {
      this.#refuse(res, req, dest, path, { status: 403, reason: 'rule-not-granted' }, started)
      return
    }
    await this.#forward(req, res, dest, path, rule, { requirePlaceholder: false }, started)
  }

  // ---- forwarding ---------------------------------------------------------

  async #prepare(
    req: { method?: string | undefined; headers: IncomingHttpHeaders },
    dest: Destination,
    path: string,
    rule: EgressRule | undefined,
    gate: { requirePlaceholder: boolean },
    upgrade: boolean,
    h2 = false,
  ): Promise<
    | { ok: false; refusal: Refusal & { rule?: string; retryAfter?: number; hint?: string } }
    | { ok: true; target: UpstreamTarget; headers: OutgoingHttpHeaders; path: string; secret: string | null; reinject: (forceRefresh: boolean) => Promise<{ headers: OutgoingHttpHeaders; path: string; secret: string } | null> }
  > {
    const ruleName = rule === undefined ? {} : { rule: rule.name }
    if (req.method === 'TRACE' || req.method === 'TRACK') return { ok: false, refusal: { status: 405, reason: 'trace-refused', ...ruleName } }
    if (rule === undefined && !this.#isAllowedHost(dest.host)) return { ok: false, refusal: { status: 403, reason: 'host-not-allowed' } }
    const headers = stripHopByHop(req.headers, upgrade)
    // gRPC over HTTP/2 needs `te: trailers` end to end (the one TE value HTTP/2 allows).
    if (h2 && req.headers.te === 'trailers') headers.te = 'trailers'
    const checked = checkPlaceholders(this.placeholders, rule, headers, path)
    if ('status' in checked) return { ok: false, refusal: { ...checked, ...ruleName } }
    if (gate.requirePlaceholder && !checked.hits.some((hit) => hit.rule === rule?.name)) {
      return { ok: false, refusal: { status: 407, reason: 'proxy-auth-required', ...ruleName } }
    }
    if (rule === undefined) {
      const literal = isIP(dest.host) !== 0 && this.#isAllowedHost(dest.host)
      const target: UpstreamTarget = {
        scheme: dest.scheme,
        host: dest.host,
        port: dest.port,
        extraCa: this.#options.extraCaCerts ?? [],
        // An IP literal the user listed as allowed is an explicit choice, like a pinned upstream.
        ...(literal ? { pinned: { host: dest.host, port: dest.port } } : {}),
      }
      return { ok: true, target, headers, path, secret: null, reinject: () => Promise.resolve(null) }
    }
    const retryAfter = this.#buckets.get(rule.name)?.take() ?? 0
    if (retryAfter > 0) return { ok: false, refusal: { status: 429, reason: 'rate-limited', retryAfter, ...ruleName } }
    const placeholder = this.placeholders.byRule.get(rule.name) ?? ''
    const target = await this.#ruleTarget(rule, dest)
    const reinject = async (forceRefresh: boolean): Promise<{ headers: OutgoingHttpHeaders; path: string; secret: string } | null> => {
      const secret = await this.#secretFor(rule, forceRefresh)
      if (secret === null) return null
      const injected = injectCredential(rule, dest.host, placeholder, secret, headers, path)
      // The client must not pick a content coding the scrubber cannot see into (a gzipped echo of the secret).
      injected.headers['accept-encoding'] = 'identity'
      return { ...injected, secret }
    }
    let first
    try {
      first = await reinject(false)
    } catch {
      // The store or the OAuth refresh failed on the host (details stay in the host log).
      return { ok: false, refusal: { status: 502, reason: 'credential-unavailable', ...ruleName } }
    }
    if (first === null) return { ok: false, refusal: { status: 502, reason: 'credential-missing', ...ruleName, hint: missingHint(rule) } }
    // Nothing placeholder-like may leave in any encoding (e.g. a percent-encoded one in a header).
    const leftover = checkPlaceholders(this.placeholders, undefined, first.headers, first.path)
    if ('status' in leftover) return { ok: false, refusal: { status: 403, reason: 'unswapped-placeholder', ...ruleName } }
    return { ok: true, target, headers: first.headers, path: first.path, secret: first.secret, reinject }
  }

  async #secretFor(rule: EgressRule, forceRefresh: boolean): Promise<string | null> {
    const credential = rule.credential
    const secret =
      'key' in credential
        ? await this.#options.credentials.apiKey(credential.key)
        : await this.#options.credentials.accessToken(credential.oauth, credential.bucket, forceRefresh ? { forceRefresh: true } : {})
    return secret !== null && isSafeHeaderSecret(secret) ? secret : null
  }

  async #ruleTarget(rule: EgressRule, dest: Destination): Promise<UpstreamTarget> {
    // Without a client certificate a target never changes: one object per rule and destination.
    const cacheKey = `${rule.name}|${dest.host}|${dest.port}`
    if (rule.clientCert === undefined) {
      const cached = this.#targets.get(cacheKey)
      if (cached !== undefined) return cached
    }
    const extraCa = [...(this.#options.extraCaCerts ?? [])]
    const ruleCa = this.#ruleCa.get(rule.name)
    if (ruleCa !== undefined) extraCa.push(ruleCa)
    const target: UpstreamTarget = { scheme: 'https', host: dest.host, port: dest.port, extraCa }
    if (rule.upstream !== undefined) {
      const pinned = parseAuthority(rule.upstream, 443)
      if (pinned !== null) target.pinned = pinned
    }
    if (rule.clientCert !== undefined) {
      const [cert, key] = await Promise.all([this.#options.credentials.apiKey(rule.clientCert.cert), this.#options.credentials.apiKey(rule.clientCert.key)])
      if (cert !== null && key !== null) target.clientCert = { cert, key }
    } else {
      if (this.#targets.size >= MAX_CACHED_TARGETS) this.#targets.clear()
      this.#targets.set(cacheKey, target)
    }
    return target
  }

  async #forward(
    req: IncomingMessage,
    res: ServerResponse,
    dest: Destination,
    path: string,
    rule: EgressRule | undefined,
    gate: { requirePlaceholder: boolean },
    started: number,
  ): Promise<void> {
    const prepared = await this.#prepare(req, dest, path, rule, gate, false)
    if (!prepared.ok) {
      this.#refuse(res, req, dest, path, prepared.refusal, started)
      return
    }
    let bytesIn = 0
    let body: Buffer | IncomingMessage | null = null
    const expectContinue = /100-continue/i.test(String(req.headers.expect ?? ''))
    if (hasBody(req.headers)) {
      const length = Number(req.headers['content-length'] ?? Number.NaN)
      if (!expectContinue && Number.isSafeInteger(length) && length <= MAX_REPLAY_BODY_BYTES) {
        body = await readSmallBody(req)
        bytesIn = body.length
      } else {
        req.on('data', (chunk: Buffer) => {
          bytesIn += chunk.length
        })
        // A client reset mid-upload ends the upstream request (below), not the process.
        req.on('error', () => undefined)
        body = req
      }
    }
    const replayable = body === null || Buffer.isBuffer(body)
    const onContinue = expectContinue ? () => res.writeContinue() : undefined
    let { headers, path: upstreamPath, secret } = prepared
    let answer
    try {
      answer = await this.#pool.request(prepared.target, { method: req.method ?? 'GET', path: upstreamPath, headers, body }, onContinue)
      // OAuth: one refresh and one resend after a 401, when the body can be sent again.
      if (answer.response.statusCode === 401 && rule !== undefined && 'oauth' in rule.credential && replayable) {
        // A failed refresh leaves the upstream's 401 as the answer.
        const again = await prepared.reinject(true).catch(() => null)
        if (again !== null && again.secret !== secret) {
          answer.response.resume()
          ;({ headers, path: upstreamPath, secret } = again)
          answer = await this.#pool.request(prepared.target, { method: req.method ?? 'GET', path: upstreamPath, headers, body }, onContinue)
        }
      }
    } catch (error) {
      const reason = upstreamFailureReason(error)
      this.#refuse(res, req, dest, path, { status: 502, reason, ...(rule === undefined ? {} : { rule: rule.name }) }, started)
      return
    }
    const upstream = answer.response
    const status = upstream.statusCode ?? 502
    const placeholder = rule === undefined ? '' : (this.placeholders.byRule.get(rule.name) ?? '')
    const forms = secret === null ? [] : secretForms(secret, placeholder, headers)
    let bytesOut = 0
    upstream.on('data', (chunk: Buffer) => {
      bytesOut += chunk.length
    })
    upstream.once('error', () => res.destroy())
    res.once('close', () => {
      if (!upstream.complete) upstream.destroy()
      this.#audit({
        ...(rule === undefined ? {} : { rule: rule.name }),
        method: req.method ?? '',
        host: dest.host,
        path,
        status,
        bytesIn,
        bytesOut,
        durationMs: performance.now() - started,
        injected: secret !== null,
      })
    })
    // The client went away mid-upload: stop the upstream request too.
    req.once('close', () => {
      if (!req.complete) answer.request.destroy()
    })
    await this.#writeResponse(res, req.method ?? 'GET', upstream, forms, placeholder.length !== (secret ?? '').length)
  }

  /**
   * The upstream's answer to the client: hop-by-hop headers out, headers, status text and body scrubbed of the
   * secret forms, framing set by Node (Content-Length when exact, else chunked or close). Shared by plain requests
   * and by upgrade requests the upstream did not switch.
   */
  async #writeResponse(res: ServerResponse, method: string, upstream: IncomingMessage, forms: Array<[Buffer, Buffer]>, lengthChanges: boolean): Promise<void> {
    const status = upstream.statusCode ?? 502
    const responseHeaders = stripHopByHop(upstream.headers)
    const outHeaders = forms.length === 0 ? responseHeaders : scrubHeaders(responseHeaders as IncomingHttpHeaders, forms)
    const statusMessage = forms.length === 0 ? (upstream.statusMessage ?? '') : scrubBuffer(Buffer.from(upstream.statusMessage ?? ''), forms).toString()
    const noBody = method === 'HEAD' || status === 204 || status === 304
    if (forms.length === 0 || noBody) {
      res.writeHead(status, statusMessage, outHeaders)
      upstream.pipe(res)
      return
    }
    if (lengthChanges) {
      // A swap would change the body length: a small declared body is scrubbed whole (exact Content-Length kept);
      // anything else streams through the scrubber without a Content-Length.
      const declared = Number(upstream.headers['content-length'] ?? Number.NaN)
      if (Number.isSafeInteger(declared) && declared <= MAX_SCRUB_BUFFER_BYTES) {
        let body: Buffer
        try {
          body = scrubBuffer(await readSmallBody(upstream), forms)
        } catch {
          res.destroy()
          return
        }
        outHeaders['content-length'] = body.length
        res.writeHead(status, statusMessage, outHeaders)
        res.end(body)
        return
      }
      delete outHeaders['content-length']
    }
    res.writeHead(status, statusMessage, outHeaders)
    upstream.pipe(new SecretScrubber(forms)).pipe(res)
  }

  // ---- CONNECT ------------------------------------------------------------

  async #onConnect(req: IncomingMessage, socket: Duplex, head: Buffer, context: ListenerContext): Promise<void> {
    const started = performance.now()
    const target = parseAuthority(req.url ?? '', 443)
    const deny = (status: number, reason: string, rule?: string): void => {
      const text = status === 407 ? 'Proxy Authentication Required' : status === 400 ? 'Bad Request' : 'Forbidden'
      const extra = status === 407 ? `proxy-authenticate: Basic realm="${PROXY_USER}"\r\n` : ''
      socket.end(`HTTP/1.1 ${status} ${text}\r\n${extra}content-length: 0\r\nconnection: close\r\n\r\n`)
      this.#audit({
        ...(rule === undefined ? {} : { rule }),
        method: 'CONNECT',
        host: target?.host ?? '',
        path: '',
        status,
        bytesIn: 0,
        bytesOut: 0,
        durationMs: performance.now() - started,
        injected: false,
        reason,
      })
    }
    if (target === null || !/:\d+$/.test(req.url ?? '')) {
      deny(400, 'bad-connect-target')
      return
    }
    if (!this.#proxyAuthorized(req, context)) {
      deny(407, 'proxy-auth-required')
      return
    }
    const rule = this.#ruleFor(target.host)
    if (rule !== undefined) {
      await this.#intercept(socket, head, { scheme: 'https', host: target.host, port: target.port }, rule, deny)
      return
    }
    if (!this.#isAllowedHost(target.host)) {
      deny(403, 'host-not-allowed')
      return
    }
    this.#tunnel(socket, head, target, started)
  }

  async #intercept(socket: Duplex, head: Buffer, dest: Destination, rule: EgressRule, deny: (status: number, reason: string) => void): Promise<void> {
    let leaf
    let protocol: 'h2' | 'http/1.1'
    try {
      // HTTP/2 is offered to the client only when the upstream speaks it (gRPC); otherwise HTTP/1.1 end to end.
      // A probe that cannot be made means HTTP/1.1; the request itself then reports what failed.
      const probe = this.#ruleTarget(rule, dest)
        .then((target) => this.#pool.protocolOf(target))
        .catch(() => 'http/1.1' as const)
      ;[leaf, protocol] = await Promise.all([this.ca.leafFor(dest.host), probe])
    } catch {
      deny(403, 'leaf-failed')
      return
    }
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
    if (head.length > 0) socket.unshift(head)
    const tlsSocket = new TLSSocket(socket as Socket, {
      isServer: true,
      secureContext: leaf.context,
      ALPNProtocols: protocol === 'h2' ? ['h2', 'http/1.1'] : ['http/1.1'],
      // The CONNECT target decides the destination: a client naming another host in SNI is refused.
      SNICallback: (servername, callback) => {
        if (servername.toLowerCase().replace(/\.$/, '') === dest.host) callback(null, leaf.context)
        else callback(new Error('sni-mismatch'))
      },
    })
    tlsSocket.on('error', () => tlsSocket.destroy())
    const handshake = setTimeout(() => tlsSocket.destroy(), this.limits.handshakeTimeoutMs)
    handshake.unref()
    tlsSocket.once('secure', () => clearTimeout(handshake))
    tlsSocket.once('close', () => clearTimeout(handshake))
    this.#intercepted.set(tlsSocket, dest)
    this.#track(tlsSocket)
    if (protocol !== 'h2') {
      this.interceptServer.emit('connection', tlsSocket)
      return
    }
    tlsSocket.once('secure', () => {
      if (tlsSocket.alpnProtocol !== 'h2') {
        this.interceptServer.emit('connection', tlsSocket)
        return
      }
      // One HTTP/2 server object per intercepted connection: its streams all go to this CONNECT target.
      const h2 = createHttp2Server()
      h2.on('stream', (stream, headers) => {
        // A client reset (RST_STREAM) must not become an uncaught 'error'.
        stream.on('error', () => stream.destroy())
        this.#onH2Stream(stream, headers, dest).catch(() => stream.close(http2Constants.NGHTTP2_INTERNAL_ERROR))
      })
      h2.on('sessionError', () => tlsSocket.destroy())
      h2.emit('connection', streamOf(tlsSocket))
    })
  }

  async #onH2Stream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, dest: Destination): Promise<void> {
    const started = performance.now()
    const method = String(headers[':method'] ?? '')
    const path = String(headers[':path'] ?? '/')
    const authority = headers[':authority'] ?? headers.host
    const plain: IncomingHttpHeaders = {}
    // `host` never goes upstream on h2 (`:authority` carries the destination); a differing one is refused below.
    for (const [name, value] of Object.entries(headers)) if (!name.startsWith(':') && name !== 'host') plain[name] = value
    const respondRefusal = (status: number, reason: string, ruleName?: string): void => {
      if (!stream.headersSent) stream.respond({ ':status': status, 'content-type': 'text/plain; charset=utf-8' })
      stream.end(`credproxy egress: refused (${reason})\n`)
      this.#audit({ ...(ruleName === undefined ? {} : { rule: ruleName }), method, host: dest.host, path, status, bytesIn: 0, bytesOut: 0, durationMs: performance.now() - started, injected: false, reason })
    }
    const given = typeof authority === 'string' ? parseAuthority(authority, 443) : null
    const host = headers.host === undefined ? given : typeof headers.host === 'string' ? parseAuthority(headers.host, 443) : null
    if (given === null || given.host !== dest.host || given.port !== dest.port || host === null || host.host !== dest.host || host.port !== dest.port) {
      respondRefusal(403, 'host-mismatch')
      return
    }
    if (method === 'CONNECT') {
      respondRefusal(405, 'connect-in-tunnel')
      return
    }
    const rule = this.#ruleFor(dest.host)
    if (rule === undefined) {
      respondRefusal(403, 'rule-not-granted')
      return
    }
    const prepared = await this.#prepare({ method, headers: plain }, dest, path, rule, { requirePlaceholder: false }, false, true)
    if (!prepared.ok) {
      respondRefusal(prepared.refusal.status, prepared.refusal.reason, rule.name)
      return
    }
    const bodyless = stream.endAfterHeaders
    const send = async (outHeaders: OutgoingHttpHeaders, outPath: string): Promise<ClientHttp2Stream> => {
      const session = await this.#pool.h2Session(prepared.target)
      const upstreamStream = session.request(
        { ...outHeaders, ':method': method, ':path': outPath, ':authority': dest.port === 443 ? dest.host : `${dest.host}:${dest.port}`, ':scheme': 'https' },
        { endStream: bodyless },
      )
      // Errors are handled where the stream is used; this keeps one from being uncaught in between.
      upstreamStream.on('error', () => undefined)
      return upstreamStream
    }
    let secret = prepared.secret
    let sent = prepared.headers
    let upstreamStream: ClientHttp2Stream
    let response: IncomingHttpHeaders
    try {
      upstreamStream = await send(prepared.headers, prepared.path)
      if (!bodyless) stream.pipe(upstreamStream)
      response = await waitForResponse(upstreamStream)
      // OAuth: one refresh and one resend after a 401 when there is no body to replay.
      if (Number(response[':status']) === 401 && bodyless && 'oauth' in rule.credential) {
        // A failed refresh leaves the upstream's 401 as the answer.
        const again = await prepared.reinject(true).catch(() => null)
        if (again !== null && again.secret !== secret) {
          upstreamStream.close()
          secret = again.secret
          sent = again.headers
          upstreamStream = await send(again.headers, again.path)
          response = await waitForResponse(upstreamStream)
        }
      }
    } catch (error) {
      respondRefusal(502, upstreamFailureReason(error), rule.name)
      return
    }
    const placeholder = this.placeholders.byRule.get(rule.name) ?? ''
    relayH2Response(stream, upstreamStream, response, secret, placeholder, sent, (status, bytesOut) => {
      this.#audit({ rule: rule.name, method, host: dest.host, path, status, bytesIn: 0, bytesOut, durationMs: performance.now() - started, injected: secret !== null })
    })
  }

  #tunnel(socket: Duplex, head: Buffer, target: { host: string; port: number }, started: number): void {
    const literal = isIP(target.host) !== 0
    if (literal && isBlockedAddress(target.host) && !this.#isAllowedHostExact(target.host)) {
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n')
      this.#audit({ method: 'CONNECT', host: target.host, path: '', status: 403, bytesIn: 0, bytesOut: 0, durationMs: performance.now() - started, injected: false, reason: 'blocked-address' })
      return
    }
    const upstream = netConnect({ host: target.host, port: target.port, ...(literal ? {} : { lookup: guardedLookup }) })
    this.#track(upstream)
    let status = 200
    let reason: string | undefined
    let connected = false
    upstream.once('connect', () => {
      connected = true
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      if (head.length > 0) upstream.write(head)
      socket.pipe(upstream)
      upstream.pipe(socket)
    })
    upstream.once('error', (error) => {
      // Before the 200 the client can still be told why; after it, the tunnel just closes.
      if (!connected && socket.writable) {
        status = 502
        reason = upstreamFailureReason(error)
        socket.end(`HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n`)
      } else {
        socket.destroy()
      }
    })
    socket.once('error', () => upstream.destroy())
    socket.once('close', () => upstream.destroy())
    upstream.once('close', () => {
      socket.destroy()
      this.#audit({
        method: 'CONNECT',
        host: target.host,
        path: '',
        status,
        bytesIn: upstream.bytesWritten,
        bytesOut: upstream.bytesRead,
        durationMs: performance.now() - started,
        injected: false,
        ...(reason === undefined ? {} : { reason }),
      })
    })
  }

  #isAllowedHostExact(host: string): boolean {
    return (this.#options.allowedHosts ?? []).some((pattern) => pattern.toLowerCase() === host)
  }

  // ---- upgrades (WebSocket) -----------------------------------------------

  async #onListenerUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, context: ListenerContext): Promise<void> {
    const started = performance.now()
    const url = req.url ?? '/'
    if (/^https?:\/\//i.test(url)) {
      const parsed = URL.canParse(url) ? new URL(url) : null
      const dest = parsed === null ? null : parseAuthority(parsed.host, parsed.protocol === 'https:' ? 443 : 80)
      if (parsed === null || dest === null || !this.#proxyAuthorized(req, context)) {
        this.#refuseSocket(socket, req, dest?.host ?? '', url, parsed === null || dest === null ? 400 : 407, 'proxy-auth-required', started)
        return
      }
      const rule = this.#ruleFor(dest.host)
      const scheme: 'https' | 'http' = rule !== undefined || parsed.protocol === 'https:' ? 'https' : 'http'
      const port = rule !== undefined && parsed.protocol === 'http:' && parsed.port === '' ? 443 : dest.port
      await this.#upgrade(req, socket, head, { scheme, host: dest.host, port }, `${parsed.pathname}${parsed.search}`, rule, { requirePlaceholder: false }, started)
      return
    }
    const routed = this.#route(url)
    if (routed === null || !this.#granted().has(routed.rule.name)) {
      this.#refuseSocket(socket, req, routed?.rule.hosts[0] ?? '', url, routed === null ? 404 : 403, routed === null ? 'no-route' : 'rule-not-granted', started)
      return
    }
    const requirePlaceholder = context.tcp && !this.#proxyAuthorized(req, context)
    const host = routed.rule.hosts[0] ?? ''
    await this.#upgrade(req, socket, head, { scheme: 'https', host, port: 443 }, routed.path, routed.rule, { requirePlaceholder }, started)
  }

  async #onInterceptedUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const started = performance.now()
    const dest = this.#intercepted.get(req.socket)
    const path = req.url ?? '/'
    if (dest === undefined || this.#hostMismatch(req, dest.host, dest.port, 443)) {
      this.#refuseSocket(socket, req, dest?.host ?? '', path, 403, 'host-mismatch', started)
      return
    }
    const rule = this.#ruleFor(dest.host)
    if (rule === undefined) {
      this.#refuseSocket(socket, req, dest.host, path, 403, 'rule-not-granted', started)
      return
    }
    await this.#upgrade(req, socket, head, dest, path, rule, { requirePlaceholder: false }, started)
  }

  #refuseSocket(socket: Duplex, req: IncomingMessage, host: string, path: string, status: number, reason: string, started: number): void {
    const extra = status === 407 ? `proxy-authenticate: Basic realm="${PROXY_USER}"\r\n` : ''
    socket.end(`HTTP/1.1 ${status} Refused\r\n${extra}content-length: 0\r\nconnection: close\r\n\r\n`)
    this.#audit({ method: req.method ?? '', host, path, status, bytesIn: 0, bytesOut: 0, durationMs: performance.now() - started, injected: false, reason })
  }

  async #upgrade(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    dest: Destination,
    path: string,
    rule: EgressRule | undefined,
    gate: { requirePlaceholder: boolean },
    started: number,
  ): Promise<void> {
    const prepared = await this.#prepare(req, dest, path, rule, gate, true)
    if (!prepared.ok) {
      this.#refuseSocket(socket, req, dest.host, path, prepared.refusal.status, prepared.refusal.reason, started)
      return
    }
    // Text frames of an injected WebSocket are rewritten; without compression they are plain text.
    const rewriteFrames = prepared.secret !== null && String(req.headers.upgrade ?? '').toLowerCase() === 'websocket'
    if (rewriteFrames) delete prepared.headers['sec-websocket-extensions']
    let answer
    try {
      answer = await this.#pool.request(prepared.target, { method: req.method ?? 'GET', path: prepared.path, headers: prepared.headers, body: null })
    } catch (error) {
      this.#refuseSocket(socket, req, dest.host, path, 502, upstreamFailureReason(error), started)
      return
    }
    const { response, upgraded } = answer
    const placeholder = rule === undefined ? '' : (this.placeholders.byRule.get(rule.name) ?? '')
    const forms = prepared.secret === null ? [] : secretForms(prepared.secret, placeholder, prepared.headers)
    this.#audit({
      ...(rule === undefined ? {} : { rule: rule.name }),
      method: req.method ?? '',
      host: dest.host,
      path,
      status: response.statusCode ?? 502,
      bytesIn: 0,
      bytesOut: 0,
      durationMs: performance.now() - started,
      injected: prepared.secret !== null,
    })
    if (upgraded === undefined) {
      // No switch: an ordinary response, written (and scrubbed) like any other, then the connection closes.
      const res = new ServerResponse(req)
      res.shouldKeepAlive = false
      res.assignSocket(socket as Socket)
      res.once('finish', () => socket.end())
      res.once('close', () => {
        if (!response.complete) response.destroy()
      })
      response.once('error', () => socket.destroy())
      await this.#writeResponse(res, req.method ?? 'GET', response, forms, placeholder.length !== prepared.secret?.length)
      return
    }
    const headers = forms.length === 0 ? response.headers : (scrubHeaders(response.headers, forms) as IncomingHttpHeaders)
    let headText = `HTTP/1.1 ${response.statusCode ?? 502} ${response.statusMessage ?? ''}\r\n`
    for (let i = 0; i < response.rawHeaders.length; i += 2) {
      const name = response.rawHeaders[i] ?? ''
      const value = headers[name.toLowerCase()]
      const text = Array.isArray(value) ? value.join(', ') : (value ?? '')
      headText += `${name}: ${String(text).replace(/[\r\n]/g, ' ')}\r\n`
    }
    headText += '\r\n'
    socket.write(headText)
    this.#track(upgraded.socket)
    this.#closeWhenIdle(socket)
    const rewrite =
      rewriteFrames && rule !== undefined && prepared.secret !== null
        ? { rule: rule.name, secret: prepared.secret, placeholder, forms, placeholders: this.placeholders }
        : null
    relayUpgradedSocket(socket, head, upgraded, rewrite, (reason) => {
      this.#audit({ ...(rule === undefined ? {} : { rule: rule.name }), method: 'WEBSOCKET', host: dest.host, path, status: 403, bytesIn: 0, bytesOut: 0, durationMs: performance.now() - started, injected: true, reason })
    })
  }

  close(): void {
    this.#pool.close()
    for (const socket of this.#openSockets) socket.destroy()
    this.#openSockets.clear()
  }
}

function listen(server: Server, target: string | { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    const done = (): void => {
      server.off('error', reject)
      resolve()
    }
    if (typeof target === 'string') server.listen(target, done)
    else server.listen(target.port, target.host, done)
  })
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()))
}

export async function startEgressProxy(options: EgressProxyOptions): Promise<EgressProxy> {
  if (options.tcp !== undefined && (options.proxyToken === undefined || options.proxyToken.length < 16)) {
    throw new Error('the egress proxy TCP listener needs a proxyToken of at least 16 characters')
  }
  if (options.tcp !== undefined && options.tcp.host !== '127.0.0.1') throw new Error('the egress proxy TCP listener binds 127.0.0.1 only')
  const ruleCa = new Map<string, string>()
  for (const rule of options.rules) {
    if (rule.ca === undefined) continue
    try {
      ruleCa.set(rule.name, await readFile(rule.ca, 'utf8'))
    } catch (error) {
      throw new Error(`egress rule ${rule.name}: cannot read ca file ${rule.ca}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, { cause: error })
    }
  }
  const ca = await SessionCa.create(options.session)
  const engine = new Engine(options, ca, ruleCa)
  const servers: Server[] = []
  let socketPath: string | null = null
  let tcpAddress: { host: string; port: number } | null = null
  try {
    if (options.socketPath !== undefined) {
      const server = engine.createListener({ tcp: false })
      const check = options.peerCheck
      if (check !== undefined) {
        // Before the HTTP parser sees a byte: a process outside the sandbox gets nothing.
        server.prependListener('connection', (socket: Socket) => {
          const decision = check(socket)
          if (decision.ok) return
          options.audit({ session: options.session, method: '-', host: '-', path: '-', status: 403, bytesIn: 0, bytesOut: 0, durationMs: 0, injected: false, reason: `peer-${decision.reason ?? 'refused'}` })
          socket.destroy()
        })
      }
      await unlink(options.socketPath).catch(() => undefined)
      await listen(server, options.socketPath)
      servers.push(server)
      await chmod(options.socketPath, 0o600)
      socketPath = options.socketPath
    }
    if (options.tcp !== undefined) {
      const server = engine.createListener({ tcp: true })
      await listen(server, options.tcp)
      servers.push(server)
      const address = server.address() as AddressInfo
      tcpAddress = { host: address.address, port: address.port }
    }
  } catch (error) {
    engine.close()
    await Promise.all(servers.map(closeServer))
    throw error
  }
  let closing: Promise<void> | null = null
  return {
    caCertPem: ca.certPem,
    placeholders: engine.placeholders.byRule,
    socketPath,
    tcpAddress,
    close() {
      closing ??= (async () => {
        const closed = Promise.all(servers.map(closeServer))
        engine.close()
        await closed
        await closeServer(engine.interceptServer)
        if (socketPath !== null) await unlink(socketPath).catch(() => undefined)
      })()
      return closing
    },
  }
}
