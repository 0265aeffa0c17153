// What one session may touch: providers (optionally per bucket), API key names and
// capabilities. Every decision comes from the grants alone, never from what is
// stored, so a refusal reveals nothing. Grants change at runtime (profile switch)
// and take effect on the next request.
import { BucketName, KeyName, ProviderName, type OpName } from '@credproxy/core'
import * as z from 'zod'

export type Capability = 'read' | 'login' | 'save'
export const CAPABILITIES: readonly Capability[] = ['read', 'login', 'save']

/** '*' as a provider or key name means all of them. */
export const WILDCARD = '*'

export interface ProviderGrant {
  provider: string
  /** Omitted: every bucket of the provider. */
  buckets?: string[] | undefined
}

export interface GrantSet {
  providers: ProviderGrant[]
  keys: string[]
  capabilities: Capability[]
  /** Egress proxy rules (`credproxy run --egress`); absent when none. */
  egress?: string[]
}

/** A partial GrantSet to add or remove. */
export interface GrantChange {
  providers?: ProviderGrant[]
  keys?: string[]
  capabilities?: Capability[]
  egress?: string[] | undefined
}

export type GrantDecision = { ok: true } | { ok: false; message: string }

const Wild = z.literal(WILDCARD)
/** An egress rule name (egress/rules.ts RULE_NAME_PATTERN; not imported: grants sit below egress). */
const EgressRuleName = z.string().regex(/^[a-zA-Z0-9._-]{1,64}$/)
export const ProviderGrantSchema = z.strictObject({
  provider: z.union([ProviderName, Wild]),
  buckets: z.array(z.union([BucketName, Wild])).max(256).optional(),
})
export const GrantChangeSchema = z.strictObject({
  providers: z.array(ProviderGrantSchema).max(256).optional(),
  keys: z.array(z.union([KeyName, Wild])).max(1024).optional(),
  capabilities: z.array(z.enum(['read', 'login', 'save'])).optional(),
  egress: z.array(EgressRuleName).max(256).optional(),
})
export const GrantSetSchema = z.strictObject({
  providers: z.array(ProviderGrantSchema).max(256),
  keys: z.array(z.union([KeyName, Wild])).max(1024),
  capabilities: z.array(z.enum(['read', 'login', 'save'])),
  egress: z.array(EgressRuleName).max(256).optional(),
})

/** The capability each operation needs. */
export const OP_CAPABILITY: Record<OpName, Capability | null> = {
  get_token: 'read',
  list_providers: 'read',
  list_buckets: 'read',
  get_bucket_stats: 'read',
  get_api_key: 'read',
  list_api_keys: 'read',
  has_api_key: 'read',
  refresh_token: 'read',
  save_token: 'save',
  remove_token: 'save',
  oauth_initiate: 'login',
  oauth_exchange: 'login',
  oauth_poll: 'login',
  oauth_cancel: 'login',
  cancel: null,
  session_info: null,
}

/** "anthropic" or "anthropic:work" -> ProviderGrant (the --grant flag syntax). */
export function parseProviderGrant(text: string): ProviderGrant {
  const at = text.indexOf(':')
  const grant = at === -1 ? { provider: text } : { provider: text.slice(0, at), buckets: [text.slice(at + 1)] }
  return ProviderGrantSchema.parse(grant)
}

export class SessionGrants {
  #providers = new Map<string, Set<string> | 'all'>()
  #keys = new Set<string>()
  #capabilities = new Set<Capability>()
  #egress = new Set<string>()

  constructor(
    readonly sessionId: string,
    initial: GrantSet,
  ) {
    const parsed = GrantSetSchema.parse(initial)
    this.grant(parsed)
  }

  checkCapability(capability: Capability): GrantDecision {
    if (this.#capabilities.has(capability)) return { ok: true }
    // Only save has a start flag; read and login are on unless revoked.
    return this.#refuse(`capability ${capability} is not granted to this session`, capability === 'save' ? '--allow-save' : null, `--capability ${capability}`)
  }

  /** bucket undefined: any grant on the provider will do (list_buckets). */
  checkProvider(provider: string, bucket: string | undefined, capability: Capability): GrantDecision {
    const cap = this.checkCapability(capability)
    if (!cap.ok) return cap
    const entries = this.#entriesFor(provider)
    if (entries.length === 0) {
      return this.#refuse(`provider ${provider} is not granted to this session`, `--grant ${provider}`, `--provider ${provider}`)
    }
    if (bucket === undefined) return { ok: true }
    for (const buckets of entries) {
      if (buckets === 'all' || buckets.has(bucket) || buckets.has(WILDCARD)) return { ok: true }
    }
    return this.#refuse(
      `bucket ${bucket} of provider ${provider} is not granted to this session`,
      `--grant ${provider}:${bucket}`,
      `--provider ${provider}:${bucket}`,
    )
  }

  checkKey(name: string): GrantDecision {
    const cap = this.checkCapability('read')
    if (!cap.ok) return cap
    if (this.#keys.has(name) || this.#keys.has(WILDCARD)) return { ok: true }
    return this.#refuse(`key ${name} is not granted to this session`, `--grant-key ${name}`, `--key ${name}`)
  }

  filterProviders(providers: readonly string[]): string[] {
    return providers.filter((p) => this.#entriesFor(p).length > 0)
  }

  filterBuckets(provider: string, buckets: readonly string[]): string[] {
    const entries = this.#entriesFor(provider)
    return buckets.filter((b) => entries.some((e) => e === 'all' || e.has(b) || e.has(WILDCARD)))
  }

  filterKeys(names: readonly string[]): string[] {
    return this.#keys.has(WILDCARD) ? [...names] : names.filter((n) => this.#keys.has(n))
  }

  grant(change: GrantChange): void {
    const parsed = GrantChangeSchema.parse(change)
    for (const { provider, buckets } of parsed.providers ?? []) {
      const current = this.#providers.get(provider)
      if (buckets === undefined || current === 'all') {
        this.#providers.set(provider, 'all')
      } else {
        this.#providers.set(provider, new Set([...(current ?? []), ...buckets]))
      }
    }
    for (const key of parsed.keys ?? []) this.#keys.add(key)
    for (const cap of parsed.capabilities ?? []) this.#capabilities.add(cap)
    for (const rule of parsed.egress ?? []) this.#egress.add(rule)
  }

  /** Egress rules live right now: the egress proxy reads this per request. */
  egressRules(): ReadonlySet<string> {
    return this.#egress
  }

  /** Throws when asked to take single buckets out of an all-buckets grant (revoke the provider instead). */
  revoke(change: GrantChange): void {
    const parsed = GrantChangeSchema.parse(change)
    for (const { provider, buckets } of parsed.providers ?? []) {
      if (buckets === undefined) {
        this.#providers.delete(provider)
        continue
      }
      const current = this.#providers.get(provider)
      if (current === undefined) continue
      if (current === 'all') {
        throw new Error(
          `provider ${provider} is granted with all buckets; revoke the provider, then grant the buckets to keep`,
        )
      }
      for (const b of buckets) current.delete(b)
      if (current.size === 0) this.#providers.delete(provider)
    }
    for (const key of parsed.keys ?? []) this.#keys.delete(key)
    for (const cap of parsed.capabilities ?? []) this.#capabilities.delete(cap)
    for (const rule of parsed.egress ?? []) this.#egress.delete(rule)
  }

  snapshot(): GrantSet {
    const providers: ProviderGrant[] = [...this.#providers].map(([provider, buckets]) =>
      buckets === 'all' ? { provider } : { provider, buckets: [...buckets].sort() },
    )
    return {
      providers,
      keys: [...this.#keys].sort(),
      capabilities: CAPABILITIES.filter((c) => this.#capabilities.has(c)),
      ...(this.#egress.size === 0 ? {} : { egress: [...this.#egress].sort() }),
    }
  }

  #entriesFor(provider: string): Array<Set<string> | 'all'> {
    const out: Array<Set<string> | 'all'> = []
    const exact = this.#providers.get(provider)
    if (exact !== undefined) out.push(exact)
    const wild = provider === WILDCARD ? undefined : this.#providers.get(WILDCARD)
    if (wild !== undefined) out.push(wild)
    return out
  }

  // The message names the grant to add: at start-up, or at runtime from the host.
  #refuse(what: string, startFlag: string | null, grantFlag: string = startFlag ?? ''): GrantDecision {
    const grant = `\`credproxy grant --session ${this.sessionId} ${grantFlag}\` on the host`
    return { ok: false, message: startFlag === null ? `${what}; run ${grant}` : `${what}; start it with ${startFlag} or run ${grant}` }
  }
}
