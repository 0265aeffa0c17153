// One cache entry per declared source: the value until its TTL or its expiry minus a
// margin; one read for any number of concurrent callers (single flight); a failure
// remembered briefly; the last good value served while still valid when a read fails.
import { readSource, SourceError, type RunSourceOptions, type SourceRun, type SourceValue } from './source-runner.js'
import { DEFAULT_SOURCE_TTL_SECONDS, programName, type SourceConfig } from './sources-config.js'

/** A failed read is not retried for this long (no prompt storms from biometric unlocks). */
export const SOURCE_FAILURE_CACHE_MS = 5_000
/**
 * A forced read (refresh_token, an upstream 401) re-runs the command only when the value is older than this (ms):
 * the sandbox cannot make a prompting command (Touch ID, a vault unlock) ask more than once a minute.
 */
export const SOURCE_FORCED_READ_INTERVAL_MS = 60_000

interface Cached {
  value: SourceValue
  readAt: number
  /** Read again after this (epoch ms). */
  freshUntil: number
  /** Still served when a new read fails, until this. */
  validUntil: number
}

interface Entry {
  cached?: Cached
  inFlight?: Promise<SourceValue>
  failure?: { error: SourceError; until: number }
}

export interface SourceCacheOptions extends RunSourceOptions {
  /** Each command run, for the audit log (no value, no arguments). */
  onRun?: (run: SourceRun) => void
  /** The reader (tests may count calls); default readSource. */
  read?: (source: SourceConfig, options: RunSourceOptions) => Promise<SourceValue>
}

export class SourceCache {
  readonly #entries = new Map<string, Entry>()
  readonly #now: () => number
  readonly #stop = new AbortController()

  constructor(private readonly options: SourceCacheOptions) {
    this.#now = options.now ?? Date.now
  }

  /** Kill every running command and forget every value; later reads fail. Idempotent. */
  stop(): void {
    this.#stop.abort()
    this.#entries.clear()
  }

  /** The source's value, from the cache when fresh; throws SourceError when there is none to serve. */
  get(source: SourceConfig, options: { force?: boolean } = {}): Promise<SourceValue> {
    if (this.#stop.signal.aborted) return Promise.reject(new SourceError(`source ${source.name}: the session closed`))
    const key = `${source.kind}:${source.name}`
    let entry = this.#entries.get(key)
    if (entry === undefined) this.#entries.set(key, (entry = {}))
    const now = this.#now()
    // force (a 401 upstream): read again, unless the value was read less than SOURCE_FORCED_READ_INTERVAL_MS ago.
    const freshUntil =
      entry.cached === undefined
        ? 0
        : options.force === true
          ? Math.min(entry.cached.freshUntil, entry.cached.readAt + SOURCE_FORCED_READ_INTERVAL_MS)
          : entry.cached.freshUntil
    if (entry.cached !== undefined && now < freshUntil) return Promise.resolve(entry.cached.value)
    if (entry.inFlight !== undefined) return entry.inFlight
    if (entry.failure !== undefined && now < entry.failure.until) return this.#fallback(entry, entry.failure.error, now)
    const current = entry
    const flight = this.#read(source)
      .then((read) => {
        current.cached = this.#cached(source, read)
        delete current.failure
        return read
      })
      .catch((error: unknown) => {
        const failure = error instanceof SourceError ? error : new SourceError(`source ${source.name} failed: ${String(error)}`)
        const at = this.#now()
        current.failure = { error: failure, until: at + SOURCE_FAILURE_CACHE_MS }
        this.options.log?.(`credential source ${source.name}: ${failure.message}`)
        return this.#fallback(current, failure, at)
      })
      .finally(() => {
        delete current.inFlight
      })
    entry.inFlight = flight
    return flight
  }

  #fallback(entry: Entry, error: SourceError, now: number): Promise<SourceValue> {
    if (entry.cached !== undefined && now < entry.cached.validUntil) return Promise.resolve(entry.cached.value)
    return Promise.reject(error)
  }

  #cached(source: SourceConfig, read: SourceValue): Cached {
    const now = this.#now()
    // env sources are read once per session; files on every use; commands per TTL.
    const ttlSeconds = source.ttl_seconds ?? (source.env !== undefined ? Infinity : source.file !== undefined ? 0 : DEFAULT_SOURCE_TTL_SECONDS)
    const ttlEnd = now + ttlSeconds * 1000
    // Without an expiry, a value is served for one more TTL when the next read fails.
    if (read.expiresAt === undefined) return { value: read, readAt: now, freshUntil: ttlEnd, validUntil: now + 2 * ttlSeconds * 1000 }
    const marginEnd = read.expiresAt - source.expiry_margin_seconds * 1000
    // A value that lives less than the margin is still reused briefly: not one run per request.
    const freshUntil = Math.max(Math.min(ttlEnd, marginEnd), Math.min(now + SOURCE_FAILURE_CACHE_MS, read.expiresAt))
    return { value: read, readAt: now, freshUntil, validUntil: read.expiresAt }
  }

  async #read(source: SourceConfig): Promise<SourceValue> {
    // Wall time, not the injectable clock: the audit records how long the command really took.
    const started = performance.now()
    const read = this.options.read ?? readSource
    try {
      const value = await read(source, { ...this.options, signal: this.#stop.signal })
      this.#audit(source, started, null, true)
      return value
    } catch (error) {
      this.#audit(source, started, error instanceof SourceError ? error.exitCode : null, false)
      throw error
    }
  }

  #audit(source: SourceConfig, started: number, exitCode: number | null, ok: boolean): void {
    if (source.command === undefined) return
    this.options.onRun?.({
      name: source.name,
      kind: source.kind,
      program: programName(source.command[0] ?? ''),
      exitCode: ok ? 0 : exitCode,
      durationMs: Math.round(performance.now() - started),
      ok,
    })
  }
}
