// In-memory HostStores for server tests, standing in for the storage room's
// file backend while it is being written. Real sockets, real framing; only the
// persistence is in memory. Same contract: storage/types.ts.
import type { BucketStats, OAuthToken, ProviderKeyStorage } from '@credproxy/core'
import type { HeldLock } from '../../src/storage/locks.js'
import type { HostStores, HostTokenStore } from '../../src/storage/types.js'

const DEFAULT = 'default'

export class MemoryTokenStore implements HostTokenStore {
  readonly tokens = new Map<string, OAuthToken>()
  readonly usage = new Map<string, { count: number; lastUsed: number }>()
  /** Set to make every call throw this (simulates a broken backend). */
  failWith: Error | undefined
  /** Set to delay every read until the promise resolves (tests of in-flight and cancel). */
  gate: Promise<void> | undefined

  #k(provider: string, bucket = DEFAULT): string {
    return `${provider}\u0000${bucket}`
  }

  async #enter(): Promise<void> {
    if (this.gate !== undefined) await this.gate
    if (this.failWith !== undefined) throw this.failWith
  }

  async getToken(provider: string, bucket?: string): Promise<OAuthToken | null> {
    await this.#enter()
    const t = this.tokens.get(this.#k(provider, bucket))
    return t === undefined ? null : structuredClone(t)
  }

  async saveToken(provider: string, token: OAuthToken, bucket?: string): Promise<void> {
    await this.#enter()
    this.tokens.set(this.#k(provider, bucket), structuredClone(token))
  }

  async removeToken(provider: string, bucket?: string): Promise<void> {
    await this.#enter()
    this.tokens.delete(this.#k(provider, bucket))
  }

  async listProviders(): Promise<string[]> {
    await this.#enter()
    return [...new Set([...this.tokens.keys()].map((k) => k.split('\u0000')[0] ?? ''))].sort()
  }

  async listBuckets(provider: string): Promise<string[]> {
    await this.#enter()
    return [...this.tokens.keys()]
      .map((k) => k.split('\u0000'))
      .filter(([p]) => p === provider)
      .map(([, b]) => b ?? DEFAULT)
      .sort()
  }

  async getBucketStats(provider: string, bucket?: string): Promise<BucketStats | null> {
    await this.#enter()
    const b = bucket ?? DEFAULT
    const mine = this.usage.get(this.#k(provider, b))
    if (mine === undefined) return null
    let total = 0
    for (const [k, u] of this.usage) if (k.startsWith(`${provider}\u0000`)) total += u.count
    return { bucket: b, requestCount: mine.count, percentage: (mine.count / total) * 100, lastUsed: mine.lastUsed }
  }

  async acquireRefreshLock(): Promise<boolean> {
    return true
  }
  async releaseRefreshLock(): Promise<void> {}
  async acquireAuthLock(): Promise<boolean> {
    return true
  }
  async releaseAuthLock(): Promise<void> {}

  async updateToken(
    provider: string,
    bucket: string,
    update: (current: OAuthToken | null) => OAuthToken | null | Promise<OAuthToken | null>,
  ): Promise<OAuthToken | null> {
    await this.#enter()
    const next = await update(this.tokens.get(this.#k(provider, bucket)) ?? null)
    if (next === null) this.tokens.delete(this.#k(provider, bucket))
    else this.tokens.set(this.#k(provider, bucket), structuredClone(next))
    return next
  }

  async recordUsage(provider: string, bucket: string): Promise<void> {
    const k = this.#k(provider, bucket)
    const u = this.usage.get(k) ?? { count: 0, lastUsed: 0 }
    this.usage.set(k, { count: u.count + 1, lastUsed: Date.now() })
  }

  // One process, no contention: a lock that is always free and always held.
  async lockCredential(): Promise<HeldLock | null> {
    return { assertHeld: () => Promise.resolve(), release: () => Promise.resolve() }
  }
}

export class MemoryKeyStorage implements ProviderKeyStorage {
  readonly keys = new Map<string, string>()
  async getKey(name: string): Promise<string | null> {
    return this.keys.get(name) ?? null
  }
  async saveKey(name: string, value: string): Promise<void> {
    this.keys.set(name, value.trim())
  }
  async deleteKey(name: string): Promise<boolean> {
    return this.keys.delete(name)
  }
  async listKeys(): Promise<string[]> {
    return [...this.keys.keys()].sort()
  }
  async hasKey(name: string): Promise<boolean> {
    return this.keys.has(name)
  }
}

export function memoryStores(): HostStores & { tokens: MemoryTokenStore; keys: MemoryKeyStorage } {
  return { tokens: new MemoryTokenStore(), keys: new MemoryKeyStorage(), backend: 'file' }
}
