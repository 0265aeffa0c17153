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

/** true for addresses the proxy never connects to on behalf of a name (IPv4-mapped IPv6 checked as IPv4). */
export function isBlockedAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1]
  if (mapped !== undefined) return BLOCKED.check(mapped, 'ipv4')
  const family = isIP(address)
  if (family === 0) return true
  return BLOCKED.check(address, family === 4 ? 'ipv4' : 'ipv6')
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
