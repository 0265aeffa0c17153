// Response hygiene: when an upstream echoes the injected secret back (error pages,
// debug endpoints), the sandbox gets the placeholder instead - in headers and in
// streamed bodies, also when the secret is split across chunks. Only bytes that
// could still start the secret are held back, so streams (SSE) are not delayed.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'
import { Transform, type TransformCallback } from 'node:stream'

/**
 * The forms of a secret worth scrubbing: raw, percent-encoded, base64 and base64url, and the exact Basic
 * credentials the proxy sent (`sent`: the injected request headers), each mapped to the same form of the placeholder.
 */
export function secretForms(secret: string, placeholder: string, sent: OutgoingHttpHeaders = {}): Array<[Buffer, Buffer]> {
  const forms: Array<[Buffer, Buffer]> = [[Buffer.from(secret), Buffer.from(placeholder)]]
  const add = (from: string, to: string): void => {
    if (from !== secret && from !== '' && !forms.some(([known]) => known.toString() === from)) forms.push([Buffer.from(from), Buffer.from(to)])
  }
  add(encodeURIComponent(secret), encodeURIComponent(placeholder))
  const base64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64')
  const base64url = (text: string): string => Buffer.from(text, 'utf8').toString('base64url')
  // The Basic tokens go before base64(secret): a shorter form replaced first could break a longer match.
  for (const value of Object.values(sent).flatMap((v) => (Array.isArray(v) ? v : [v]))) {
    const match = /^basic[ \t]+([A-Za-z0-9+/=_-]+)/i.exec(String(value ?? ''))
    if (match?.[1] === undefined) continue
    const decoded = Buffer.from(match[1], 'base64').toString('utf8')
    if (!decoded.includes(secret)) continue
    const swapped = decoded.split(secret).join(placeholder)
    add(base64(decoded), base64(swapped))
    add(base64url(decoded), base64url(swapped))
  }
  add(base64(secret), base64(placeholder))
  add(base64url(secret), base64url(placeholder))
  return forms
}

export function scrubHeaders(headers: IncomingHttpHeaders, forms: Array<[Buffer, Buffer]>): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {}
  const pairs = forms.map(([secret, placeholder]) => [secret.toString(), placeholder.toString()] as const)
  const scrub = (value: string): string => {
    let text = value
    for (const [secret, placeholder] of pairs) if (text.includes(secret)) text = text.split(secret).join(placeholder)
    return text
  }
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue
    out[name] = Array.isArray(value) ? value.map(scrub) : scrub(value)
  }
  return out
}

/** Length of the longest suffix of `buf` (from `from`) that is a proper prefix of `needle`. */
function partialMatchAtEnd(buf: Buffer, from: number, needle: Buffer): number {
  const longest = Math.min(needle.length - 1, buf.length - from)
  for (let size = longest; size > 0; size--) {
    if (buf.compare(needle, 0, size, buf.length - size, buf.length) === 0) return size
  }
  return 0
}

/** `buf` with every secret form replaced by its placeholder (a whole, small body). */
export function scrubBuffer(buf: Buffer, forms: Array<[Buffer, Buffer]>): Buffer {
  let out = buf
  for (const [secret, placeholder] of forms) {
    if (secret.length === 0) continue
    let at = out.indexOf(secret)
    if (at < 0) continue
    const parts: Buffer[] = []
    let from = 0
    while (at >= 0) {
      parts.push(out.subarray(from, at), placeholder)
      from = at + secret.length
      at = out.indexOf(secret, from)
    }
    parts.push(out.subarray(from))
    out = Buffer.concat(parts)
  }
  return out
}

/** A stream that replaces every occurrence of each secret form with its placeholder. */
export class SecretScrubber extends Transform {
  readonly #forms: Array<[Buffer, Buffer]>
  #tail: Buffer = Buffer.alloc(0)
  /** true once any replacement was made (for the audit line). */
  replaced = false

  constructor(forms: Array<[Buffer, Buffer]>) {
    super()
    this.#forms = forms.filter(([secret]) => secret.length > 0)
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const buf = this.#tail.length === 0 ? chunk : Buffer.concat([this.#tail, chunk])
    const out = scrubBuffer(buf, this.#forms)
    if (out !== buf) this.replaced = true
    // Hold back the longest end that could still begin any secret form.
    let hold = 0
    for (const [secret] of this.#forms) hold = Math.max(hold, partialMatchAtEnd(out, 0, secret))
    this.#tail = hold === 0 ? Buffer.alloc(0) : Buffer.from(out.subarray(out.length - hold))
    if (out.length - hold > 0) this.push(out.subarray(0, out.length - hold))
    callback()
  }

  override _flush(callback: TransformCallback): void {
    if (this.#tail.length > 0) this.push(this.#tail)
    callback()
  }
}
