// Placeholders, the request rewrite and the response scrubber, as pure functions:
// shape and entropy of placeholders, every encoding a placeholder may hide in,
// and echo replacement across every chunk split.
import { Readable } from 'node:stream'
import { describe, expect, test } from 'vitest'
import { checkPlaceholders, injectCredential, stripHopByHop } from '../src/egress/inject.js'
import { decodeBasic, encodeBasic, generatePlaceholder, PlaceholderSet } from '../src/egress/placeholders.js'
import { SecretScrubber, scrubHeaders, secretForms } from '../src/egress/response-hygiene.js'
import { EgressRuleSchema, PLACEHOLDER_MARKER, type EgressRule } from '../src/egress/rules.js'

const rules: EgressRule[] = [
  EgressRuleSchema.parse({ name: 'a', hosts: ['a.test'], credential: { key: 'A' }, inject: { header: 'authorization', format: 'Bearer {}' } }),
  EgressRuleSchema.parse({ name: 'b', hosts: ['b.test'], credential: { key: 'B' }, inject: { query: 'key' }, placeholder: { prefix: 'ghp_', length: 40 } }),
]
const set = new PlaceholderSet(rules)
const pa = set.byRule.get('a') ?? ''
const pb = set.byRule.get('b') ?? ''

describe('placeholders', () => {
  test('>= 128 random bits, the marker, the prefix and exact length when asked', () => {
    const values = new Set(Array.from({ length: 200 }, () => generatePlaceholder(undefined)))
    expect(values.size).toBe(200)
    const one = generatePlaceholder({ prefix: 'ghp_', length: 40 })
    expect(one).toMatch(new RegExp(`^ghp_${PLACEHOLDER_MARKER}[0-9A-Za-z]{30}$`))
    // 30 base62 characters after the marker: 178 bits; the schema refuses a length leaving < 22 (130 bits).
    expect(pb).toHaveLength(40)
    expect(EgressRuleSchema.safeParse({ ...rules[1], placeholder: { prefix: 'ghp_', length: 29 } }).success).toBe(false)
  })

  test('each rule gets its own placeholder', () => {
    expect(pa).not.toBe(pb)
    expect(set.ruleOf(pa)).toBe('a')
  })
})

describe('checkPlaceholders', () => {
  const check = (rule: EgressRule | undefined, headers: Record<string, string>, path = '/'): string =>
    (() => {
      const result = checkPlaceholders(set, rule, headers, path)
      return 'status' in result ? result.reason : `ok:${result.hits.map((hit) => `${hit.rule}/${hit.where}`).join(',')}`
    })()

  test('its own placeholder on its own host is found in header, Basic, path and query', () => {
    expect(check(rules[0], { authorization: `Bearer ${pa}` })).toBe('ok:a/header')
    expect(check(rules[0], { authorization: encodeBasic('u', pa) })).toContain('a/basic')
    expect(check(rules[0], {}, `/x/${pa}`)).toBe('ok:a/path')
    expect(check(rules[0], {}, `/x?k=${pa}`)).toBe('ok:a/query')
  })

  test.each([
    ['raw header', { 'x-key': pa }, '/'],
    ['Basic password', { authorization: encodeBasic('user', pa) }, '/'],
    ['Basic user', { authorization: encodeBasic(pa, '') }, '/'],
    ['raw path', {}, `/steal/${pa}`],
    ['percent-encoded query', {}, `/s?k=${[...pa].map((c) => `%${c.charCodeAt(0).toString(16)}`).join('')}`],
    ['doubly percent-encoded query', {}, `/s?k=${encodeURIComponent([...pa].map((c) => `%${c.charCodeAt(0).toString(16)}`).join(''))}`],
    ['percent-encoded header', { cookie: `k=${encodeURIComponent(`%${pa}`)}` }, '/'],
  ])("a's placeholder towards b's host (%s) is refused", (_name, headers, path) => {
    expect(check(rules[1], headers, path)).toMatch(/^foreign-placeholder-in-/)
    expect(check(undefined, headers, path)).toMatch(/^foreign-placeholder-in-/)
  })

  test('an unknown placeholder-looking value is refused, also inside Basic', () => {
    const unknown = `${PLACEHOLDER_MARKER}${'Zz9'.repeat(8)}`
    expect(check(rules[0], { authorization: `Bearer ${unknown}` })).toBe('unknown-placeholder-in-header')
    expect(check(rules[0], { authorization: encodeBasic('u', unknown) })).toMatch(/^unknown-placeholder-in-/)
    expect(check(rules[0], {}, `/p?x=${unknown}`)).toBe('unknown-placeholder-in-query')
  })

  test('ordinary values pass', () => {
    expect(check(undefined, { authorization: 'Bearer abc', accept: '*/*' }, '/a/b?c=d')).toBe('ok:')
  })
})

describe('injectCredential', () => {
  test('swaps in headers, Basic, path and query, and injects preemptively', () => {
    const out = injectCredential(rules[0] as EgressRule, 'a.test', pa, 's3cret/+', { 'x-other': `v=${pa}`, cookie: encodeBasic('u', pa) }, `/p/${pa}?q=${pa}`)
    expect(out.headers.authorization).toBe('Bearer s3cret/+')
    expect(out.headers['x-other']).toBe('v=s3cret/+')
    expect(decodeBasic(String(out.headers.cookie))).toEqual({ user: 'u', password: 's3cret/+' })
    expect(out.path).toBe(`/p/${encodeURIComponent('s3cret/+')}?q=${encodeURIComponent('s3cret/+')}`)
  })

  test('query injection sets the parameter', () => {
    const out = injectCredential(rules[1] as EgressRule, 'b.test', pb, 'k&v', {}, '/x?a=1')
    expect(new URLSearchParams(out.path.split('?')[1]).get('key')).toBe('k&v')
    expect(new URLSearchParams(out.path.split('?')[1]).get('a')).toBe('1')
  })
})

describe('stripHopByHop', () => {
  test('drops hop-by-hop and Connection-listed headers, keeps Upgrade on a WebSocket handshake', () => {
    const headers = { connection: 'keep-alive, x-drop', 'keep-alive': '5', 'x-drop': '1', 'proxy-authorization': 'Basic x', te: 'trailers', accept: '*/*' }
    expect(stripHopByHop(headers)).toEqual({ accept: '*/*' })
    expect(stripHopByHop({ connection: 'Upgrade', upgrade: 'websocket', accept: '*/*' }, true)).toEqual({ accept: '*/*', connection: 'upgrade', upgrade: 'websocket' })
  })
})

describe('response hygiene', () => {
  const secret = 'sk-REAL-secret-0123456789'
  const placeholder = `ph_${PLACEHOLDER_MARKER}abcdefghijklmnopqrstuvwxyz`

  async function scrub(chunks: string[]): Promise<string> {
    const out: Buffer[] = []
    const scrubber = new SecretScrubber(secretForms(secret, placeholder))
    for await (const chunk of Readable.from(chunks.map((text) => Buffer.from(text))).pipe(scrubber)) out.push(chunk as Buffer)
    return Buffer.concat(out).toString()
  }

  test('the secret is replaced at every split point of the stream', async () => {
    const text = `before ${secret} middle ${secret}${secret} after`
    const expected = text.split(secret).join(placeholder)
    for (let cut = 0; cut <= text.length; cut++) {
      expect(await scrub([text.slice(0, cut), text.slice(cut)])).toBe(expected)
    }
    // One byte per chunk.
    expect(await scrub([...text])).toBe(expected)
  })

  test('a near-miss is passed through unchanged, and nothing is held back at the end', async () => {
    const text = `x ${secret.slice(0, -1)}`
    expect(await scrub([text])).toBe(text)
  })

  test('only a possible start of the secret is held back (SSE events are not delayed)', () => {
    const scrubber = new SecretScrubber(secretForms(secret, placeholder))
    const pushed: string[] = []
    scrubber.on('data', (chunk: Buffer) => pushed.push(chunk.toString()))
    scrubber.write('data: one\n\n')
    expect(pushed.join('')).toBe('data: one\n\n')
    scrubber.write('data: sk-RE')
    expect(pushed.join('')).toBe('data: one\n\ndata: ')
  })

  test('headers are scrubbed, percent-encoded form too', () => {
    const odd = 'a/b+c'
    const out = scrubHeaders({ location: `https://x.test/?k=${encodeURIComponent(odd)}`, 'x-echo': `Bearer ${odd}` }, secretForms(odd, placeholder))
    expect(out['x-echo']).toBe(`Bearer ${placeholder}`)
    expect(out.location).toBe(`https://x.test/?k=${encodeURIComponent(placeholder)}`)
  })
})
