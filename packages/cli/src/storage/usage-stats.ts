// Request counts and last use per provider/bucket (get_bucket_stats). Not secret:
// kept as plain JSON in <stateDir>/usage.json for both backends.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { BucketName, ProviderName, type BucketStats } from '@credproxy/core'
import { z } from 'zod'
import { CliError } from '../cli-io.js'
import { ensurePrivateFile } from '../fs-private.js'
import { writeFileAtomic } from './atomic-write.js'
import { LockTimeoutError, WRITE_LOCK_WAIT_MS, type LockDirectory } from './locks.js'

export const USAGE_FILE = 'usage.json'
const USAGE_LOCK = 'usage'

const UsageSchema = z.strictObject({
  version: z.literal(1),
  providers: z.record(
    ProviderName,
    z.record(BucketName, z.strictObject({ requestCount: z.number().int().min(0), lastUsed: z.number().optional() })),
  ),
})
type Usage = z.infer<typeof UsageSchema>

export class UsageStats {
  readonly path: string

  constructor(
    stateDir: string,
    private readonly locks: LockDirectory,
  ) {
    this.path = join(stateDir, USAGE_FILE)
  }

  async record(provider: string, bucket: string, nowMs = Date.now()): Promise<void> {
    await this.update((usage) => {
      const buckets = (usage.providers[provider] ??= {})
      const entry = (buckets[bucket] ??= { requestCount: 0 })
      entry.requestCount += 1
      entry.lastUsed = nowMs
    })
  }

  async forget(provider: string, bucket: string): Promise<void> {
    await this.update((usage) => {
      const buckets = usage.providers[provider]
      if (buckets === undefined) return
      delete buckets[bucket]
      if (Object.keys(buckets).length === 0) delete usage.providers[provider]
    })
  }

  async stats(provider: string, bucket: string): Promise<BucketStats> {
    const buckets = (await this.read()).providers[provider] ?? {}
    const total = Object.values(buckets).reduce((sum, b) => sum + b.requestCount, 0)
    const entry = buckets[bucket]
    const requestCount = entry?.requestCount ?? 0
    const stats: BucketStats = { bucket, requestCount, percentage: total === 0 ? 0 : (requestCount / total) * 100 }
    if (entry?.lastUsed !== undefined) stats.lastUsed = entry.lastUsed
    return stats
  }

  private async read(): Promise<Usage> {
    let text: string
    try {
      await ensurePrivateFile(this.path)
      text = await readFile(this.path, 'utf8')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, providers: {} }
      throw error
    }
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      json = undefined
    }
    const parsed = UsageSchema.safeParse(json)
    if (!parsed.success) {
      throw new CliError(`${this.path} is not a valid usage file`, 'Remove it; it only holds request counts and is rebuilt.')
    }
    return parsed.data
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
        await writeFileAtomic(this.path, `${JSON.stringify(usage)}\n`, { durable: false })
      },
    )
  }
}
