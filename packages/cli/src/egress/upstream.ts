// Upstream connections: one keep-alive pool per destination (name, address,
// trust and client certificate), TLS verified against the system roots plus the
// rule's CA, and one transparent resend when a pooled connection turns out to
// be stale (the upstream closed it while idle) and the request can be replayed.
import { createHash } from 'node:crypto'
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import { isIP } from 'node:net'
import type { Duplex, Readable } from 'node:stream'
import { rootCertificates } from 'node:tls'
import { guardedLookup, isBlockedAddress, BlockedAddressError } from './guards.js'

/** Idle pooled sockets are closed after this, below the common 5 s server keep-alive, so few go stale. */
export const UPSTREAM_IDLE_TIMEOUT_MS = 4_000
/** Idle sockets kept per destination. */
export const UPSTREAM_MAX_FREE_SOCKETS = 64
/** A stale pooled connection is replaced this many times at most for one request. */
export const MAX_STALE_RETRIES = 2
/** No answer (headers) from an upstream in this time fails the request. */
export const UPSTREAM_HEADERS_TIMEOUT_MS = 120_000

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

export class UpstreamPool {
  readonly #agents = new Map<string, HttpAgent>()

  #agentFor(target: UpstreamTarget): HttpAgent {
    const certHash =
      target.clientCert === undefined ? '' : createHash('sha256').update(target.clientCert.cert).update('\0').update(target.clientCert.key).digest('hex')
    const caHash = createHash('sha256').update(target.extraCa.join('\0')).digest('hex')
    const key = [target.scheme, target.host, target.port, target.pinned?.host ?? '', target.pinned?.port ?? '', caHash, certHash].join('|')
    let agent = this.#agents.get(key)
    if (agent === undefined) {
      const common = { keepAlive: true, maxFreeSockets: UPSTREAM_MAX_FREE_SOCKETS, timeout: UPSTREAM_IDLE_TIMEOUT_MS, scheduling: 'lifo' as const }
      // A pinned upstream is the user's explicit choice; a name is resolved through the address guard.
      const lookup = target.pinned === undefined ? { lookup: guardedLookup } : {}
      agent =
        target.scheme === 'https'
          ? new HttpsAgent({
              ...common,
              ...lookup,
              ca: [...rootCertificates, ...target.extraCa],
              ...(target.clientCert === undefined ? {} : { cert: target.clientCert.cert, key: target.clientCert.key }),
              ALPNProtocols: ['http/1.1'],
            })
          : new HttpAgent({ ...common, ...lookup })
      this.#agents.set(key, agent)
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

  /** Close every pooled connection. */
  close(): void {
    for (const agent of this.#agents.values()) agent.destroy()
    this.#agents.clear()
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
