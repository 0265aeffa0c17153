// Guards in front of every upstream connection: a name that resolves to a
// loopback, link-local, private or cloud-metadata address is refused (a sandbox
// must not reach the host's own services or the metadata endpoint through us),
// unless the rule pins its upstream. Plus the optional per-rule token bucket.
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns'
import { BlockList, isIP } from 'node:net'

const BLOCKED = new BlockList()
// IPv4: this network, private, CGNAT, loopback, link-local (metadata 169.254.169.254), benchmarking,
// IETF protocol assignments, documentation, multicast and reserved.
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  BLOCKED.addSubnet(net, prefix, 'ipv4')
}
// IPv6: unspecified, loopback, unique local, link-local, multicast, and the AWS metadata fd00:ec2::254 (in fc00::/7).
BLOCKED.addAddress('::', 'ipv6')
BLOCKED.addAddress('::1', 'ipv6')
BLOCKED.addSubnet('fc00::', 7, 'ipv6')
BLOCKED.addSubnet('fe80::', 10, 'ipv6')
BLOCKED.addSubnet('ff00::', 8, 'ipv6')
// Local-use NAT64 (RFC 8215): the IPv4 position depends on the operator's prefix length, so the whole range.
BLOCKED.addSubnet('64:ff9b:1::', 48, 'ipv6')

/** The eight 16-bit groups of an IPv6 address (isIP() === 6), a trailing dotted quad folded in. */
function ipv6Groups(address: string): number[] | null {
  let text = address.split('%')[0] ?? ''
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text)
  if (dotted !== null) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number]
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const parse = (part: string | undefined): number[] => (part === undefined || part === '' ? [] : part.split(':').map((group) => Number.parseInt(group, 16)))
  const [head, tail] = text.split('::')
  const first = parse(head)
  const last = parse(tail)
  const groups = tail === undefined ? first : [...first, ...new Array<number>(8 - first.length - last.length).fill(0), ...last]
  return groups.length === 8 && groups.every((group) => Number.isInteger(group) && group >= 0 && group <= 0xffff) ? groups : null
}

/**
 * IPv4 addresses carried inside an IPv6 one that a translator or tunnel would deliver to: IPv4-compatible (::/96),
 * IPv4-mapped (::ffff:0:0/96), IPv4-translated (::ffff:0:0:0/96), NAT64 (64:ff9b::/96), 6to4 (2002::/16) and
 * Teredo (2001::/32: server and de-obfuscated client).
 */
function embeddedIpv4(groups: number[]): string[] {
  const g = (i: number): number => groups[i] ?? 0
  const v4 = (hi: number, lo: number): string => `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`
  const zero = (from: number, to: number): boolean => groups.slice(from, to).every((group) => group === 0)
  const found: string[] = []
  if (zero(0, 5) && (g(5) === 0 || g(5) === 0xffff)) found.push(v4(g(6), g(7)))
  if (zero(0, 4) && g(4) === 0xffff && g(5) === 0) found.push(v4(g(6), g(7)))
  if (g(0) === 0x64 && g(1) === 0xff9b && zero(2, 6)) found.push(v4(g(6), g(7)))
  if (g(0) === 0x2002) found.push(v4(g(1), g(2)))
  if (g(0) === 0x2001 && g(1) === 0) found.push(v4(g(2), g(3)), v4(g(6) ^ 0xffff, g(7) ^ 0xffff))
  return found
}

/** true for addresses the proxy never connects to on behalf of a name (an IPv4 embedded in IPv6 is checked as IPv4). */
export function isBlockedAddress(address: string): boolean {
  const family = isIP(address)
  if (family === 0) return true
  if (family === 4) return BLOCKED.check(address, 'ipv4')
  if (BLOCKED.check(address, 'ipv6')) return true
  const groups = ipv6Groups(address)
  if (groups === null) return true
  return embeddedIpv4(groups).some((v4) => BLOCKED.check(v4, 'ipv4'))
}

export class BlockedAddressError extends Error {
  override name = 'BlockedAddressError'
  readonly code = 'EGRESS_BLOCKED_ADDRESS'
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void

/**
 * A `lookup` for net/tls/http agents that refuses blocked addresses. Connecting to the
 * address it checked (not a second resolution) leaves no window for DNS rebinding.
 */
export function guardedLookup(hostname: string, options: LookupOptions, callback: LookupCallback): void {
  dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
    if (error !== null) {
      callback(error, [])
      return
    }
    const list = addresses
    const blocked = list.find((entry) => isBlockedAddress(entry.address))
    if (blocked !== undefined || list.length === 0) {
      callback(new BlockedAddressError(`${hostname} resolves to a loopback, private or metadata address`), [])
      return
    }
    if (options.all === true) callback(null, list)
    else callback(null, list[0]?.address ?? '', list[0]?.family ?? 4)
  })
}

/** A token bucket: `perSecond` tokens added per second, at most `burst` held. */
export class TokenBucket {
  readonly #perSecond: number
  readonly #burst: number
  #tokens: number
  #at: number

  constructor(perSecond: number, burst: number = Math.max(1, Math.ceil(perSecond)), now: () => number = Date.now) {
    this.#perSecond = perSecond
    this.#burst = burst
    this.#tokens = burst
    this.#now = now
    this.#at = now()
  }

  readonly #now: () => number

  /** 0 when a token was taken; otherwise the seconds to wait before one is available. */
  take(): number {
    const now = this.#now()
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#at) / 1000) * this.#perSecond)
    this.#at = now
    if (this.#tokens >= 1) {
      this.#tokens -= 1
      return 0
    }
    return Math.max(1, Math.ceil((1 - this.#tokens) / this.#perSecond))
  }
}
