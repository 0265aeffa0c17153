// The audit budget of one session: what a hostile sandbox can make the broker write.
// Each interval a session writes its first refusals and its first successes line by
// line, from two separate budgets (a flood of refusals never uses up the room for
// credential reads); the rest of the interval is counted, one summary line per kind
// (event, op, outcome, reason) with `count`. A lifetime cap bounds what one session
// can add to the shared, rotated files, so it cannot push out another session's lines.
// Guarantees and their tests: dev-docs/security.md "Audit log under flood".
import type { AuditEntry, AuditSink } from '../broker/hooks.js'

/** Length of one budget interval (ms); summaries are written when it ends (and at stop). */
export const AUDIT_INTERVAL_MS = 60_000
/** Refused or failed events (requests, handshakes, connections) written one line each per interval, per session. */
export const AUDIT_NOISE_LINES_PER_INTERVAL = 32
/** Successful requests, handshakes and grant changes written one line each per interval, per session. */
export const AUDIT_RECORD_LINES_PER_INTERVAL = 120
/** Distinct summary kinds per interval; further kinds are counted under their event alone. */
export const AUDIT_SUMMARY_KINDS_PER_INTERVAL = 64
/** One-line-each entries per session over its lifetime (about 5 MB); after that only summaries. */
export const AUDIT_SESSION_MAX_LINES = 20_000

export interface AuditBudgetOptions {
  intervalMs?: number
  noiseLinesPerInterval?: number
  recordLinesPerInterval?: number
  sessionMaxLines?: number
  /** ms; injectable for tests. */
  now?: () => number
}

type Kind = 'record' | 'noise'

interface Folded {
  /** The first entry of its kind this interval: the summary carries its names and peer. */
  entry: AuditEntry
  count: number
}

/** Successes (a credential read, a request the egress proxy forwarded, a source run that worked) are records; every refusal or failure is noise. */
export function auditKind(entry: AuditEntry): Kind {
  if (entry.event === 'grant_changed' || entry.event === 'handshake_ok') return 'record'
  return (entry.event === 'request' || entry.event === 'egress' || entry.event === 'source_run') && entry.outcome === 'ok' ? 'record' : 'noise'
}

export class AuditBudget implements AuditSink {
  readonly #sink: AuditSink
  readonly #intervalMs: number
  readonly #budget: Record<Kind, number>
  readonly #sessionMaxLines: number
  readonly #now: () => number
  #windowStart: number
  #used: Record<Kind, number> = { record: 0, noise: 0 }
  #lifetime = 0
  #folded = new Map<string, Folded>()
  #timer: NodeJS.Timeout | undefined

  constructor(sink: AuditSink, options: AuditBudgetOptions = {}) {
    this.#sink = sink
    this.#intervalMs = options.intervalMs ?? AUDIT_INTERVAL_MS
    this.#budget = {
      record: options.recordLinesPerInterval ?? AUDIT_RECORD_LINES_PER_INTERVAL,
      noise: options.noiseLinesPerInterval ?? AUDIT_NOISE_LINES_PER_INTERVAL,
    }
    this.#sessionMaxLines = options.sessionMaxLines ?? AUDIT_SESSION_MAX_LINES
    this.#now = options.now ?? Date.now
    this.#windowStart = this.#now()
  }

  write(entry: AuditEntry): void {
    const now = this.#now()
    if (now - this.#windowStart >= this.#intervalMs) this.#rollover(now)
    const kind = auditKind(entry)
    if (this.#lifetime < this.#sessionMaxLines && this.#used[kind] < this.#budget[kind]) {
      this.#used[kind]++
      this.#lifetime++
      this.#sink.write(entry)
      return
    }
    this.#fold(kind, entry, now)
  }

  /** Write the summaries of the current interval now (server stop). */
  flush(): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    const folded = this.#folded
    this.#folded = new Map()
    const time = new Date(this.#now()).toISOString()
    for (const { entry, count } of folded.values()) {
      const summary: AuditEntry = { ...entry, time, count }
      delete summary.durationMs
      this.#sink.write(summary)
    }
  }

  #rollover(now: number): void {
    this.flush()
    this.#windowStart = now
    this.#used = { record: 0, noise: 0 }
  }

  #fold(kind: Kind, entry: AuditEntry, now: number): void {
    // Only fixed vocabularies go into the kind (never peer-chosen names), so the map stays small.
    let key = `${kind}|${entry.event}|${entry.outcome}|${entry.reason ?? ''}|${entry.op ?? ''}`
    let example = entry
    if (!this.#folded.has(key) && this.#folded.size >= AUDIT_SUMMARY_KINDS_PER_INTERVAL) {
      key = `${kind}|${entry.event}`
      example = { session: entry.session, event: entry.event, outcome: entry.outcome, peer: entry.peer ?? null }
    }
    const folded = this.#folded.get(key)
    if (folded !== undefined) folded.count++
    else this.#folded.set(key, { entry: example, count: 1 })
    if (this.#timer === undefined) {
      this.#timer = setTimeout(() => this.#rollover(this.#now()), Math.max(0, this.#windowStart + this.#intervalMs - now))
      this.#timer.unref()
    }
  }
}
