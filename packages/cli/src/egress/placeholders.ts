// Placeholders: what the sandbox holds instead of a secret. Each is the rule's
// optional prefix, a fixed marker and >= 128 random bits (base62), so any
// placeholder - ours, stale, or another session's - can be recognised in a request
// and swapped only on its own rule's hosts, or refused everywhere else.
import { randomInt } from 'node:crypto'
import { MIN_PLACEHOLDER_RANDOM_CHARS, PLACEHOLDER_MARKER, type EgressRule } from './rules.js'

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
/** Random characters when a rule fixes no length: 32 base62 characters, about 190 bits. */
export const DEFAULT_PLACEHOLDER_RANDOM_CHARS = 32
/** Anything that looks like a placeholder (marker + 128 bits of base62), known or not. */
export const PLACEHOLDER_LOOKALIKE = new RegExp(`${PLACEHOLDER_MARKER}[0-9A-Za-z]{${MIN_PLACEHOLDER_RANDOM_CHARS},}`)

export function generatePlaceholder(spec: EgressRule['placeholder']): string {
  const prefix = spec?.prefix ?? ''
  const randomChars = spec?.length === undefined ? DEFAULT_PLACEHOLDER_RANDOM_CHARS : spec.length - prefix.length - PLACEHOLDER_MARKER.length
  let body = ''
  for (let i = 0; i < randomChars; i++) body += BASE62[randomInt(62)]
  return `${prefix}${PLACEHOLDER_MARKER}${body}`
}

/** Where a placeholder was seen in a request, and in which encoding. */
export interface PlaceholderHit {
  rule: string
  where: 'header' | 'basic' | 'path' | 'query' | 'websocket'
}

export type ScanResult =
  | { ok: true; hits: PlaceholderHit[] }
  /** `foreign`: a known placeholder of another rule; `unknown`: a placeholder-looking value of no rule. */
  | { ok: false; reason: 'foreign-placeholder' | 'unknown-placeholder'; where: PlaceholderHit['where'] }

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value)
  } catch {
    return value
  }
}

/** The decoded credentials of a Basic header value, or null when it is not Basic. */
export function decodeBasic(value: string): { user: string; password: string } | null {
  const match = /^basic[ \t]+([A-Za-z0-9+/=_-]+)[ \t]*$/i.exec(value)
  if (match?.[1] === undefined) return null
  const text = Buffer.from(match[1], 'base64').toString('utf8')
  const colon = text.indexOf(':')
  return colon < 0 ? { user: text, password: '' } : { user: text.slice(0, colon), password: text.slice(colon + 1) }
}

export function encodeBasic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`, 'utf8').toString('base64')}`
}

/**
 * The session's placeholders: rule name <-> value. `scan` classifies every
 * placeholder-looking string in a text; callers pass each view of a value they
 * check (raw, percent-decoded, Basic-decoded).
 */
export class PlaceholderSet {
  readonly byRule = new Map<string, string>()
  readonly #byValue = new Map<string, string>()

  constructor(rules: readonly EgressRule[]) {
    for (const rule of rules) {
      const value = generatePlaceholder(rule.placeholder)
      this.byRule.set(rule.name, value)
      this.#byValue.set(value, rule.name)
    }
  }

  ruleOf(value: string): string | undefined {
    return this.#byValue.get(value)
  }

  /**
   * Every placeholder in `text`: known ones are reported by rule; anything else that
   * looks like one, or a known one of a rule not in `allowed`, fails the scan.
   */
  scan(text: string, where: PlaceholderHit['where'], allowed: ReadonlySet<string>, hits: PlaceholderHit[]): ScanResult {
    if (!text.includes(PLACEHOLDER_MARKER)) return { ok: true, hits }
    let rest = text
    for (const [value, rule] of this.#byValue) {
      if (!rest.includes(value)) continue
      if (!allowed.has(rule)) return { ok: false, reason: 'foreign-placeholder', where }
      hits.push({ rule, where })
      rest = rest.split(value).join(' ')
    }
    if (PLACEHOLDER_LOOKALIKE.test(rest)) return { ok: false, reason: 'unknown-placeholder', where }
    return { ok: true, hits }
  }

  /** Scan a value in all the encodings a client may use: raw, percent-encoded, inside Basic. */
  scanAll(value: string, where: 'header' | 'path' | 'query', allowed: ReadonlySet<string>, hits: PlaceholderHit[]): ScanResult {
    const raw = this.scan(value, where, allowed, hits)
    if (!raw.ok) return raw
    if (value.includes('%')) {
      // Decode twice so a doubly-encoded marker is seen too.
      const once = safeDecode(value)
      const decoded = this.scan(once, where, allowed, hits)
      if (!decoded.ok) return decoded
      if (once.includes('%')) {
        const twice = this.scan(safeDecode(once), where, allowed, hits)
        if (!twice.ok) return twice
      }
    }
    if (where === 'header') {
      const basic = decodeBasic(value)
      if (basic !== null) {
        const inside = this.scan(`${basic.user}:${basic.password}`, 'basic', allowed, hits)
        if (!inside.ok) return inside
      }
    }
    return { ok: true, hits }
  }
}

/** `text` with every occurrence of `placeholder` (raw or percent-encoded) replaced by `secret`. */
export function swapPlaceholder(text: string, placeholder: string, secret: string, encode: (value: string) => string = (value) => value): string {
  return text.split(placeholder).join(encode(secret))
}
