// Request rewriting: hop-by-hop headers out, placeholders checked (a placeholder
// may travel only to its own rule's hosts), swapped for the secret in headers,
// Basic, path and query, then the rule's preemptive injection. A last scan makes
// sure no placeholder-looking value leaves the proxy in any encoding.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'
import { decodeBasic, encodeBasic, type PlaceholderHit, type PlaceholderSet } from './placeholders.js'
import { injectFor, type EgressRule } from './rules.js'

/** Headers that describe one hop, never forwarded (RFC 9110 7.6.1, plus the proxy ones). */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
])

/** `headers` without hop-by-hop fields; `upgrade` keeps Connection: upgrade + Upgrade for a WebSocket handshake. */
export function stripHopByHop(headers: IncomingHttpHeaders, upgrade = false): OutgoingHttpHeaders {
  const listed = new Set(
    String(headers.connection ?? '')
      .split(',')
      .map((token) => token.trim().toLowerCase())
      .filter((token) => token !== ''),
  )
  const out: OutgoingHttpHeaders = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue
    if (HOP_BY_HOP.has(name) || (listed.has(name) && name !== 'upgrade')) continue
    out[name] = value
  }
  if (upgrade && headers.upgrade !== undefined) {
    out.connection = 'upgrade'
    out.upgrade = headers.upgrade
  }
  return out
}

export interface Refusal {
  status: number
  reason: string
}

function headerValues(value: OutgoingHttpHeaders[string]): string[] {
  if (value === undefined) return []
  return Array.isArray(value) ? value.map(String) : [String(value)]
}

/**
 * Check every placeholder in the request: each must belong to `rule` (the rule of
 * the destination host), anything else - a placeholder of another rule, or an
 * unknown one - refuses the request. Returns the hits or the refusal.
 */
export function checkPlaceholders(
  placeholders: PlaceholderSet,
  rule: EgressRule | undefined,
  headers: OutgoingHttpHeaders,
  path: string,
): { hits: PlaceholderHit[] } | Refusal {
  const allowed: ReadonlySet<string> = rule === undefined ? new Set() : new Set([rule.name])
  const hits: PlaceholderHit[] = []
  const queryAt = path.indexOf('?')
  const pathPart = queryAt < 0 ? path : path.slice(0, queryAt)
  const queryPart = queryAt < 0 ? '' : path.slice(queryAt + 1)
  const views: Array<[string, 'header' | 'path' | 'query']> = [
    [pathPart, 'path'],
    [queryPart, 'query'],
  ]
  // Header values are scanned raw, percent-decoded and (when Basic) decoded; names raw.
  for (const [name, value] of Object.entries(headers)) {
    views.push([name, 'header'])
    for (const text of headerValues(value)) views.push([text, 'header'])
  }
  for (const [text, where] of views) {
    const result = placeholders.scanAll(text, where, allowed, hits)
    if (!result.ok) return { status: 403, reason: `${result.reason}-in-${result.where}` }
  }
  return { hits }
}

/** Replace `placeholder` by `secret` in one header value, including inside Basic credentials. */
function swapInHeader(value: string, placeholder: string, secret: string): string {
  // Most headers hold neither the placeholder nor Basic credentials: leave them as they are.
  const maybeBasic = value.length > 6 && (value.charCodeAt(0) | 0x20) === 0x62 && /^basic[ \t]/i.test(value)
  if (!maybeBasic) return value.includes(placeholder) ? value.split(placeholder).join(secret) : value
  const basic = decodeBasic(value)
  if (basic !== null && (basic.user.includes(placeholder) || basic.password.includes(placeholder))) {
    return encodeBasic(basic.user.split(placeholder).join(secret), basic.password.split(placeholder).join(secret))
  }
  return value.split(placeholder).join(secret)
}

/** Replace `placeholder` in a path and query, raw or percent-encoded, by the percent-encoded secret. */
function swapInPath(path: string, placeholder: string, secret: string): string {
  const encodedSecret = encodeURIComponent(secret)
  let out = path.split(placeholder).join(encodedSecret)
  const encodedPlaceholder = encodeURIComponent(placeholder)
  if (encodedPlaceholder !== placeholder) out = out.split(encodedPlaceholder).join(encodedSecret)
  return out
}

function setQueryParam(path: string, name: string, value: string): string {
  const queryAt = path.indexOf('?')
  const base = queryAt < 0 ? path : path.slice(0, queryAt)
  const params = new URLSearchParams(queryAt < 0 ? '' : path.slice(queryAt + 1))
  params.set(name, value)
  return `${base}?${params.toString()}`
}

export interface Injected {
  headers: OutgoingHttpHeaders
  path: string
}

/**
 * The request as it goes upstream to `host`: the rule's placeholder swapped for
 * `secret` everywhere, then the rule's injection for that host applied preemptively
 * (git sends no credentials before a 401). Caller has run checkPlaceholders first.
 */
export function injectCredential(
  rule: EgressRule,
  host: string,
  placeholder: string,
  secret: string,
  headers: OutgoingHttpHeaders,
  path: string,
): Injected {
  const out: OutgoingHttpHeaders = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue
    out[name] = Array.isArray(value)
      ? value.map((item) => swapInHeader(String(item), placeholder, secret))
      : typeof value === 'number'
        ? value
        : swapInHeader(value, placeholder, secret)
  }
  let outPath = swapInPath(path, placeholder, secret)
  const spec = injectFor(rule, host)
  if ('header' in spec) {
    out[spec.header] = spec.format.replace('{}', secret)
  } else if ('basic' in spec) {
    if (spec.basic.user !== undefined) out.authorization = encodeBasic(spec.basic.user, secret)
  } else if ('query' in spec) {
    outPath = setQueryParam(outPath, spec.query, secret)
  }
  return { headers: out, path: outPath }
}

/** A header value fit to send: no CR/LF/NUL (a secret with one would split the header). */
export function isSafeHeaderSecret(secret: string): boolean {
  return secret !== '' && !/[\r\n\0]/.test(secret)
}
