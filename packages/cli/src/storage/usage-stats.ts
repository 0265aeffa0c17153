// Request counts and last use per provider/bucket (get_bucket_stats). Not secret:
// kept as plain JSON in <stateDir>/usage.json for both backends.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { BUCKET_NAME_PATTERN, isReservedName, PROVIDER_NAME_PATTERN, ProxyError, type BucketStats } from '@credproxy/core/client'
import { ensurePrivateFile } from '../fs-private.js'
import { writeFileAtomic } from './atomic-write.js'
import { extraKey, isJsonObject } from './json-checks.js'
import { LockTimeoutError, WRITE_LOCK_WAIT_MS, type LockDirectory } from './locks.js'
import { parseCheckedJsonFile } from '../json-file.js'

export const USAGE_FILE = 'usage.json'
const USAGE_LOCK = 'usage'

interface StoredUse {
  requestCount: number
  lastUsed?: number
}
type UsageJson = { version: 1; providers: Record<string, Record<string, StoredUse>> }

function isStoredUse(value: unknown): value is StoredUse {
  if (!isJsonObject(value)) return false
  const { requestCount, lastUsed } = value
  return (
    typeof requestCount === 'number' &&
    Number.isInteger(requestCount) &&
    requestCount >= 0 &&
    (lastUsed === undefined || (typeof lastUsed === 'number' && Number.isFinite(lastUsed))) &&
    extraKey(value, ['requestCount', 'lastUsed']) === undefined
  )
}

/** Own entries without a `__proto__` key (JSON.parse makes one an own key): skipped, as zod's records did. */
function entries<T>(record: Record<string, T>): Array<[string, T]> {
  return Object.entries(record).filter(([key]) => key !== '__proto__')
}

/** {version: 1, providers: {provider: {bucket: {requestCount, lastUsed?}}}} with valid names, nothing else. */
function isUsageJson(json: unknown): json is UsageJson {
  if (!isJsonObject(json) || json['version'] !== 1 || extraKey(json, ['version', 'providers']) !== undefined) return false
  const providers = json['providers']
  if (!isJsonObject(providers)) return false
  return entries(providers).every(
    ([provider, buckets]) =>
      PROVIDER_NAME_PATTERN.test(provider) &&
      isJsonObject(buckets) &&
      entries(buckets).every(([bucket, use]) => BUCKET_NAME_PATTERN.test(bucket) && isStoredUse(use)),
  )
}
/** usage.json in Maps: names come from peers, and a plain object keyed by one could reach Object.prototype. */
type Usage = Map<string, Map<string, StoredUse>>

/** How long uses are counted in memory before they are merged into usage.json (one locked write per period). */
export const USAGE_FLUSH_DELAY_MS = 1_000

/** Uses counted in memory since the last flush, per provider and bucket. */
interface PendingUse {
  count: number
  lastUsed: number
}

/**
 * Counts live in memory and reach usage.json on a short debounce and on close(), so a
 * get_token never waits on the cross-process lock. A flush adds this process's
 * increments to what the file holds (other processes flush theirs the same way),
 * so counts stay correct across processes; lastUsed is the latest of all.
 */
export class UsageStats {
  readonly path: string
  readonly #pending = new Map<string, Map<string, PendingUse>>()
  #timer: NodeJS.Timeout | undefined
  #flushing: Promise<void> | undefined

  constructor(
    stateDir: string,
    private readonly locks: LockDirectory,
    private readonly log: (line: string) => void = () => undefined,
    private readonly flushDelayMs: number = USAGE_FLUSH_DELAY_MS,
  ) {
    this.path = join(stateDir, USAGE_FILE)
  }

  /** Count one use now; it reaches the file within flushDelayMs (or on flush/close). */
  record(provider: string, bucket: string, nowMs = Date.now()): void {
    checkNames(provider, bucket)
    this.#add(provider, bucket, 1, nowMs)
    this.#schedule()
  }

  async forget(provider: string, bucket: string): Promise<void> {
    checkNames(provider, bucket)
    // Uses of a removed bucket still waiting in memory (or being written) must not bring it back.
    while (this.#flushing !== undefined) await this.#flushing
    const buckets = this.#pending.get(provider)
    buckets?.delete(bucket)
    if (buckets?.size === 0) this.#pending.delete(provider)
    await this.update((usage) => {
      const stored = usage.get(provider)
      if (stored === undefined) return
      stored.delete(bucket)
      if (stored.size === 0) usage.delete(provider)
    })
  }

  /** What the file holds plus this process's uses not yet flushed. */
  async stats(provider: string, bucket: string): Promise<BucketStats> {
    checkNames(provider, bucket)
    const stored = (await this.read()).get(provider) ?? new Map<string, StoredUse>()
    const pending = this.#pending.get(provider)
    let total = 0
    for (const b of stored.values()) total += b.requestCount
    if (pending !== undefined) for (const p of pending.values()) total += p.count
    const entry = stored.get(bucket)
    const mine = pending?.get(bucket)
    const requestCount = (entry?.requestCount ?? 0) + (mine?.count ?? 0)
    const stats: BucketStats = { bucket, requestCount, percentage: total === 0 ? 0 : (requestCount / total) * 100 }
    const lastUsed = Math.max(entry?.lastUsed ?? -Infinity, mine?.lastUsed ?? -Infinity)
    if (Number.isFinite(lastUsed)) stats.lastUsed = lastUsed
    return stats
  }

  /** Merge the uses counted so far into usage.json. Resolves once they are written (or failed and are kept for the next try). */
  async flush(): Promise<void> {
    clearTimeout(this.#timer)
    this.#timer = undefined
    // One writer at a time: uses counted while a flush runs go in the next one.
    while (this.#flushing !== undefined) await this.#flushing
    if (this.#pending.size === 0) return
    this.#flushing = this.#write().finally(() => {
      this.#flushing = undefined
    })
    await this.#flushing
  }

  /** Flush and stop the timer; a later record() starts it again. */
  async close(): Promise<void> {
    await this.flush()
    clearTimeout(this.#timer)
    this.#timer = undefined
  }

  #schedule(): void {
    if (this.#timer !== undefined) return
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      void this.flush()
    }, this.flushDelayMs)
    // Counting must not keep a process alive; owners call close() before they exit.
    this.#timer.unref()
  }

  #add(provider: string, bucket: string, count: number, lastUsed: number): void {
    let buckets = this.#pending.get(provider)
    if (buckets === undefined) this.#pending.set(provider, (buckets = new Map()))
    const entry = buckets.get(bucket)
    if (entry === undefined) buckets.set(bucket, { count, lastUsed })
    else {
      entry.count += count
      if (lastUsed > entry.lastUsed) entry.lastUsed = lastUsed
    }
  }

  async #write(): Promise<void> {
    const batch = new Map(this.#pending)
    this.#pending.clear()
    try {
      await this.update((usage) => {
        for (const [provider, buckets] of batch) {
          let stored = usage.get(provider)
          if (stored === undefined) usage.set(provider, (stored = new Map()))
          for (const [bucket, use] of buckets) {
            let entry = stored.get(bucket)
            if (entry === undefined) stored.set(bucket, (entry = { requestCount: 0 }))
            entry.requestCount += use.count
            entry.lastUsed = Math.max(entry.lastUsed ?? use.lastUsed, use.lastUsed)
          }
        }
      })
    } catch (error) {
      // Keep the uses for the next flush rather than lose them; the log says why.
      for (const [provider, buckets] of batch) {
        for (const [bucket, use] of buckets) this.#add(provider, bucket, use.count, use.lastUsed)
      }
      this.log(`credproxy: writing usage counts to ${this.path} failed: ${(error as Error).message}`)
      this.#schedule()
    }
  }

  private async read(): Promise<Usage> {
    let text: string
    try {
      await ensurePrivateFile(this.path)
      text = await readFile(this.path, 'utf8')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return new Map()
      throw error
    }
    const data = parseCheckedJsonFile<UsageJson>(text, this.path, (json) => (isUsageJson(json) ? undefined : { field: '', issue: 'not a usage file' }), {
      message: () => `${this.path} is not a valid usage file`,
      hint: 'Remove it; it only holds request counts and is rebuilt.',
    })
    // Object.entries reads own keys only; the Maps never touch a prototype.
    return new Map(entries(data.providers).map(([provider, buckets]) => [provider, new Map(entries(buckets))]))
  }

  private async update(change: (usage: Usage) => void): Promise<void> {
    await this.locks.withLock(
      USAGE_LOCK,
      { waitMs: WRITE_LOCK_WAIT_MS },
      () => new LockTimeoutError('usage statistics', WRITE_LOCK_WAIT_MS),
      async () => {
        const usage = await this.read()
        change(usage)
        // Counts are not worth an fsync per request; the rename still keeps the file whole.
        const providers = Object.fromEntries([...usage].map(([provider, buckets]) => [provider, Object.fromEntries(buckets)]))
        await writeFileAtomic(this.path, `${JSON.stringify({ version: 1, providers })}\n`, { durable: false })
      },
    )
  }
}

/** Storage callers check names first; this keeps a reserved name out of usage.json whoever calls. */
function checkNames(provider: string, bucket: string): void {
  if (isReservedName(provider) || isReservedName(bucket)) {
    throw new ProxyError('INVALID_REQUEST', `'${isReservedName(provider) ? provider : bucket}' is a reserved name`)
  }
}
