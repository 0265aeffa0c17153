// Upstream connections: one keep-alive pool per destination (name, address,
// trust and client certificate), TLS verified against the system roots plus the
// rule's CA, and one transparent resend when a pooled connection turns out to
// be stale (the upstream closed it while idle) and the request can be replayed.
import { createHash } from 'node:crypto'
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import { isIP } from 'node:net'
import type { Duplex, Readable } from 'node:stream'
import { connect as http2Connect, type ClientHttp2Session } from 'node:http2'
import { connect as tlsConnect, createSecureContext, rootCertificates, type ConnectionOptions, type SecureContext, type TLSSocket } from 'node:tls'
import { guardedLookup, isBlockedAddress, BlockedAddressError } from './guards.js'

/** Idle pooled sockets are closed after this, below the common 5 s server keep-alive, so few go stale. */
export const UPSTREAM_IDLE_TIMEOUT_MS = 4_000
/** Idle sockets kept per destination. */
export const UPSTREAM_MAX_FREE_SOCKETS = 64
/** A stale pooled connection is replaced this many times at most for one request. */
export const MAX_STALE_RETRIES = 2
/** No answer (headers) from an upstream in this time fails the request. */
export const UPSTREAM_HEADERS_TIMEOUT_MS = 120_000
/** Destinations with pooled state (agent, ALPN answer, HTTP/2 session) kept at once; the least recently used go first. */
export const MAX_UPSTREAM_DESTINATIONS = 256

/** `map.get(key)`, marking it most recently used (a Map iterates in insertion order). */
function touch<V>(map: Map<string, V>, key: string): V | undefined {
  const value = map.get(key)
  if (value !== undefined) {
    map.delete(key)
    map.set(key, value)
  }
  return value
}

/** Remove least recently used entries beyond the cap, handing each to `release`. */
function evict<V>(map: Map<string, V>, release: (value: V) => void = () => undefined): void {
  for (const [key, value] of map) {
    if (map.size <= MAX_UPSTREAM_DESTINATIONS) return
    map.delete(key)
    release(value)
  }
}

/** An evicted agent: its idle sockets close now; requests still running finish, then its idle timeout closes them. */
function releaseAgent(agent: HttpAgent): void {
  for (const sockets of Object.values(agent.freeSockets)) for (const socket of sockets ?? []) socket.destroy()
}

export interface UpstreamTarget {
  scheme: 'https' | 'http'
  /** The name the request is for: TLS server name, certificate check and Host. */
  host: string
  port: number
  /** Where to connect when the rule pins an address (private endpoints, tests). */
  pinned?: { host: string; port: number }
  /** Extra trusted CA PEMs (rule `ca`, proxy-wide extraCaCerts). */
  extraCa: readonly string[]
  clientCert?: { cert: string; key: string }
}

export interface UpstreamAnswer {
  response: IncomingMessage
  request: ClientRequest
  /** Set when the upstream switched protocols (WebSocket): the raw socket and bytes already read. */
  upgraded?: { socket: Duplex; head: Buffer }
}

export interface UpstreamRequest {
  method: string
  path: string
  headers: OutgoingHttpHeaders
  /** null: no body; Buffer: a small body held for replay; stream: piped once, never replayed. */
  body: Buffer | Readable | null
}

const STALE_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED'])

function hostHeader(target: UpstreamTarget): string {
  const name = isIP(target.host) === 6 ? `[${target.host}]` : target.host
  const defaultPort = target.scheme === 'https' ? 443 : 80
  return target.port === defaultPort ? name : `${name}:${target.port}`
}

/** The ALPN probe at CONNECT gives up after this (the client waits for it); HTTP/1.1 is then assumed. */
export const ALPN_PROBE_TIMEOUT_MS = 5_000
/** How long an upstream's ALPN answer (h2 or http/1.1) is remembered. */
export const ALPN_CACHE_MS = 10 * 60 * 1000

/** Keys of targets already seen (the proxy reuses one target object per rule and destination). */
const keys = new WeakMap<UpstreamTarget, string>()

function targetKey(target: UpstreamTarget): string {
  const known = keys.get(target)
  if (known !== undefined) return known
  const key = computeTargetKey(target)
  keys.set(target, key)
  return key
}

function trustKey(target: UpstreamTarget): string {
  const certHash =
    target.clientCert === undefined ? '' : createHash('sha256').update(target.clientCert.cert).update('\0').update(target.clientCert.key).digest('hex')
  const caHash = createHash('sha256').update(target.extraCa.join('\0')).digest('hex')
  return `${caHash}|${certHash}`
}

function computeTargetKey(target: UpstreamTarget): string {
  return [target.scheme, target.host, target.port, target.pinned?.host ?? '', target.pinned?.port ?? '', trustKey(target)].join('|')
}

/** Trust (system roots + extra CAs) and client certificate, parsed once per distinct set (not per host). */
const contexts = new Map<string, SecureContext>()
function secureContextFor(target: UpstreamTarget): SecureContext {
  const key = trustKey(target)
  let context = contexts.get(key)
  if (context === undefined) {
    context = createSecureContext({
      ca: [...rootCertificates, ...target.extraCa],
      ...(target.clientCert === undefined ? {} : { cert: target.clientCert.cert, key: target.clientCert.key }),
    })
    // Bounded: one per (extra CAs, client certificate); old ones are dropped first.
    if (contexts.size >= 1_000) contexts.delete(contexts.keys().next().value ?? '')
    contexts.set(key, context)
  }
  return context
}

/** TLS options for a verified connection to `target` (system roots + extra CAs, SNI, guard, client cert). */
function tlsOptions(target: UpstreamTarget, alpn: string[]): ConnectionOptions {
  return {
    host: (target.pinned?.host ?? target.host).replace(/^\[|\]$/g, ''),
    port: target.pinned?.port ?? target.port,
    ...(isIP(target.host) === 0 ? { servername: target.host } : {}),
    secureContext: secureContextFor(target),
    ...(target.pinned === undefined ? { lookup: guardedLookup } : {}),
    ALPNProtocols: alpn,
  }
}

function connectVerified(target: UpstreamTarget, alpn: string[], timeoutMs?: number): Promise<TLSSocket> {
  if (target.pinned === undefined && isIP(target.host) !== 0 && isBlockedAddress(target.host)) {
    return Promise.reject(new BlockedAddressError(`${target.host} is a loopback, private or metadata address`))
  }
  return new Promise((resolve, reject) => {
    const socket = tlsConnect(tlsOptions(target, alpn), () => {
      clearTimeout(timer)
      socket.off('error', reject)
      resolve(socket)
    })
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => socket.destroy(new Error('upstream TLS connect timed out')), timeoutMs)
    socket.once('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
  })
}

export class UpstreamPool {
  readonly #agents = new Map<string, HttpAgent>()
  readonly #alpn = new Map<string, { protocol: string; at: number }>()
  readonly #sessions = new Map<string, Promise<ClientHttp2Session>>()

  /**
   * Whether the upstream speaks HTTP/2 (its ALPN choice when offered h2 and http/1.1),
   * remembered per target; 'http/1.1' when it cannot be reached (the request will report why).
   */
  async protocolOf(target: UpstreamTarget): Promise<'h2' | 'http/1.1'> {
    const key = targetKey(target)
    const known = touch(this.#alpn, key)
    if (known !== undefined && Date.now() - known.at < ALPN_CACHE_MS) return known.protocol === 'h2' ? 'h2' : 'http/1.1'
    let protocol = 'http/1.1'
    try {
      const socket = await connectVerified(target, ['h2', 'http/1.1'], ALPN_PROBE_TIMEOUT_MS)
      protocol = socket.alpnProtocol === 'h2' ? 'h2' : 'http/1.1'
      socket.destroy()
    } catch {
      return 'http/1.1'
    }
    this.#alpn.set(key, { protocol, at: Date.now() })
    evict(this.#alpn)
    return protocol === 'h2' ? 'h2' : 'http/1.1'
  }

  /** A shared HTTP/2 session to `target` (one connection, many streams), opened on first use. */
  h2Session(target: UpstreamTarget): Promise<ClientHttp2Session> {
    const key = targetKey(target)
    const existing = touch(this.#sessions, key)
    if (existing !== undefined) return existing
    const opening = connectVerified(target, ['h2']).then((socket) => {
      if (socket.alpnProtocol !== 'h2') {
        socket.destroy()
        throw Object.assign(new Error('the upstream does not speak HTTP/2'), { code: 'ERR_UPSTREAM_NO_H2' })
      }
      const session = http2Connect(`https://${target.host}:${target.port}`, { createConnection: () => socket })
      const forget = (): void => {
        if (this.#sessions.get(key) === opening) this.#sessions.delete(key)
      }
      session.once('close', forget)
      session.once('error', forget)
      session.once('goaway', forget)
      // An idle session does not keep the proxy alive.
      session.unref()
      return session
    })
    this.#sessions.set(key, opening)
    // An evicted session takes no new streams; the ones running finish (close() is graceful).
    evict(this.#sessions, (evicted) => void evicted.then((session) => session.close(), () => undefined))
    opening.catch(() => this.#sessions.delete(key))
    return opening
  }

  #agentFor(target: UpstreamTarget): HttpAgent {
    const key = targetKey(target)
    let agent = touch(this.#agents, key)
    if (agent === undefined) {
      // noDelay: a request head and body are separate writes; Nagle + delayed ACK would stall each by ~40 ms.
      const common = { noDelay: true, keepAlive: true, maxFreeSockets: UPSTREAM_MAX_FREE_SOCKETS, timeout: UPSTREAM_IDLE_TIMEOUT_MS, scheduling: 'lifo' as const }
      // A pinned upstream is the user's explicit choice; a name is resolved through the address guard.
      const lookup = target.pinned === undefined ? { lookup: guardedLookup } : {}
      agent =
        target.scheme === 'https'
          ? new HttpsAgent({
              ...common,
              ...lookup,
              // A prepared context, not `ca`: the agent keys its pool on `ca`, which would join ~150 PEMs per request.
              secureContext: secureContextFor(target),
              ALPNProtocols: ['http/1.1'],
            })
          : new HttpAgent({ ...common, ...lookup })
      this.#agents.set(key, agent)
      evict(this.#agents, releaseAgent)
    }
    return agent
  }

  /**
   * Send one request and resolve with the response head. A replayable request
   * (no body or a Buffer) is resent on a new connection when a reused pooled one
   * fails before answering; the caller sees no error from a stale connection.
   */
  request(target: UpstreamTarget, upstream: UpstreamRequest, onContinue?: () => void): Promise<UpstreamAnswer> {
    if (target.pinned === undefined && isIP(target.host) !== 0 && isBlockedAddress(target.host)) {
      return Promise.reject(new BlockedAddressError(`${target.host} is a loopback, private or metadata address`))
    }
    const replayable = upstream.body === null || Buffer.isBuffer(upstream.body)
    const agent = this.#agentFor(target)
    const send = (attempt: number): Promise<UpstreamAnswer> =>
      new Promise((resolve, reject) => {
        const connectHost = target.pinned?.host ?? target.host
        const headers: OutgoingHttpHeaders = { ...upstream.headers, host: hostHeader(target) }
        const options = {
          agent,
          method: upstream.method,
          path: upstream.path,
          host: connectHost.replace(/^\[|\]$/g, ''),
          port: target.pinned?.port ?? target.port,
          headers,
          // Certificate checks use the requested name, also when connecting to a pinned address.
          ...(target.scheme === 'https' && isIP(target.host) === 0 ? { servername: target.host } : {}),
        }
        const request = target.scheme === 'https' ? httpsRequest(options) : httpRequest(options)
        let answered = false
        request.setTimeout(UPSTREAM_HEADERS_TIMEOUT_MS, () => {
          if (!answered) request.destroy(new Error('upstream did not answer in time'))
        })
        request.once('response', (response) => {
          answered = true
          request.setTimeout(0)
          resolve({ response, request })
        })
        request.once('upgrade', (response, socket, head) => {
          answered = true
          request.setTimeout(0)
          resolve({ response, request, upgraded: { socket, head } })
        })
        if (onContinue !== undefined) request.on('continue', onContinue)
        request.once('error', (error: NodeJS.ErrnoException) => {
          if (answered) return
          if (replayable && request.reusedSocket && STALE_CODES.has(error.code ?? '') && attempt < MAX_STALE_RETRIES) {
            resolve(send(attempt + 1))
            return
          }
          reject(error)
        })
        if (upstream.body === null) request.end()
        else if (Buffer.isBuffer(upstream.body)) request.end(upstream.body)
        else upstream.body.pipe(request)
      })
    return send(0)
  }

  /** Destinations with pooled state right now (tests: the maps stay bounded). */
  sizes(): { agents: number; alpn: number; sessions: number } {
    return { agents: this.#agents.size, alpn: this.#alpn.size, sessions: this.#sessions.size }
  }

  /** Close every pooled connection. */
  close(): void {
    for (const agent of this.#agents.values()) agent.destroy()
    this.#agents.clear()
    for (const session of this.#sessions.values()) session.then((open) => open.destroy(), () => undefined).catch(() => undefined)
    this.#sessions.clear()
  }
}

/** A short fixed reason for an upstream failure (audit and the 502 body); never the raw message. */
export function upstreamFailureReason(error: unknown): string {
  if (error instanceof BlockedAddressError) return 'blocked-address'
  const code = (error as NodeJS.ErrnoException | undefined)?.code ?? ''
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME|ERR_TLS|ERR_SSL/.test(code)) return 'upstream-tls-unverified'
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'upstream-name-unresolved'
  if (code === 'ECONNREFUSED') return 'upstream-refused'
  return 'upstream-failed'
}
