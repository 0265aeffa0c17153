// The egress proxy's public types (the contract with its callers and tests).
import type { Socket } from 'node:net'
import type { EgressAuditFields } from '../broker/hooks.js'
import type { EgressRule } from './rules.js'

export interface EgressCredentials {
  /** The stored API key value, or null when none is stored. */
  apiKey(name: string): Promise<string | null>
  /** A fresh OAuth access token (refreshed on the host when near expiry). forceRefresh after an upstream 401. */
  accessToken(provider: string, bucket: string, options?: { forceRefresh?: boolean }): Promise<string | null>
}

/** One per proxied request or refusal; never a secret, a placeholder or a query string. */
export interface EgressAuditEvent extends EgressAuditFields {
  session: string
  durationMs: number
  reason?: string
}

export interface EgressProxyOptions {
  session: string
  /** Already parsed (loadEgressRules / presets). */
  rules: EgressRule[]
  /** Rule names live for this session right now (checked per request). */
  grantedRules: () => ReadonlySet<string>
  credentials: EgressCredentials
  audit: (event: EgressAuditEvent) => void
  /** Listen on a Unix socket (0600). */
  socketPath?: string
  /**
   * Runs right after accept on the Unix socket (run: only processes inside this session's
   * sandbox); a refused peer is audited (`peer-<reason>`) and disconnected before any byte is read.
   */
  peerCheck?: (socket: Socket) => { ok: boolean; reason?: string }
  /** Optional loopback listener (port 0 = any); requires proxyToken. */
  tcp?: { host: '127.0.0.1'; port: number }
  /** Required on tcp as Proxy-Authorization: Basic base64("credproxy:" + token). */
  proxyToken?: string
  /** Hosts tunnelled without interception (exact or *.suffix); default none. */
  allowedHosts?: string[]
  /** PEM, trusted for upstream verification in addition to system roots. */
  extraCaCerts?: string[]
  /** Overrides of the connection limits (tests use short ones); defaults are the constants in proxy.ts. */
  limits?: Partial<EgressConnectionLimits>
}

export interface EgressConnectionLimits {
  /** An intercepted CONNECT whose client has not finished the TLS handshake in this time is closed. */
  handshakeTimeoutMs: number
  /** A tunnel, intercepted connection or switched (WebSocket) connection with no byte either way for this long is closed. */
  idleTimeoutMs: number
  /** Client connections open at once per listener; more are dropped at accept (and audited). */
  maxConnections: number
}

export interface EgressProxy {
  /** The per-session CA the sandbox must trust. */
  caCertPem: string
  /** Rule name -> placeholder value the sandbox gets. */
  placeholders: ReadonlyMap<string, string>
  socketPath: string | null
  tcpAddress: { host: string; port: number } | null
  close(): Promise<void>
}
