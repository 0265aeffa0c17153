// The audit log: one JSON line per operation and per refused connection, in a 0600
// file under the state dir, size-capped with rotation. Lines are built from an
// explicit field list, each value checked against its name rule, so no secret (or
// terminal escape) can slip in. Threat model: dev-docs/security.md.
import { constants, type Stats } from 'node:fs'
import { open, readdir, rename, stat, type FileHandle } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { KEY_NAME_PATTERN, PROVIDER_NAME_PATTERN, isErrorCode } from '@credproxy/core'
import * as z from 'zod'
import { ensurePrivateDir, PRIVATE_FILE_MODE } from '../fs-private.js'
import type { CredproxyPaths } from '../paths.js'
import type { AuditEntry, AuditSink, PeerInfo } from '../broker/hooks.js'
import type { SecurityLog } from '../broker/peer-credentials.js'

/** A log file is rotated before a write would take it past this size. */
export const DEFAULT_AUDIT_MAX_BYTES = 10 * 1024 * 1024
/** Rotated files kept beside the live one: audit.log.1 (newest) ... audit.log.N. */
export const DEFAULT_AUDIT_MAX_FILES = 5
/** Lines waiting for the disk; beyond this, entries are counted and dropped (one audit_dropped line says how many). */
export const MAX_AUDIT_QUEUE_LINES = 10_000
/** How often `readAuditEntries(..., { follow })` looks for new lines. */
export const AUDIT_FOLLOW_POLL_MS = 200
const READ_CHUNK_BYTES = 64 * 1024
const AUDIT_FILE_NAME = 'audit.log'

export function auditLogPath(paths: CredproxyPaths): string {
  return join(paths.stateDir, AUDIT_FILE_NAME)
}

const SESSION_PATTERN = /^[A-Za-z0-9_-]{1,128}$/
const OP_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/
const REASON_PATTERN = /^[A-Za-z0-9:._-]{1,64}$/
const ISO_TIME_PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$/
const EVENTS: ReadonlySet<string> = new Set<AuditEntry['event']>([
  'request',
  'connection_refused',
  'connection_evicted',
  'handshake_failed',
  'handshake_ok',
  'grant_changed',
  'egress',
  'source_run',
])
/** Written in place of a peer-supplied value that breaks its name rule (too long, odd characters). */
export const AUDIT_INVALID_VALUE = '<invalid>'

function checked(value: unknown, pattern: RegExp): string | undefined {
  if (value === undefined) return undefined
  return typeof value === 'string' && pattern.test(value) ? value : AUDIT_INVALID_VALUE
}

function checkedInt(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) ? value : undefined
}

function formatPeer(peer: PeerInfo | null | undefined): Record<string, number> | null | undefined {
  if (peer === undefined || peer === null) return peer
  const out: Record<string, number> = {}
  for (const field of ['pid', 'uid', 'gid', 'sandboxPid'] as const) {
    const value = checkedInt((peer as PeerInfo & { sandboxPid?: unknown })[field])
    if (value !== undefined) out[field] = value
  }
  return out
}

/**
 * The JSON line for one entry, built field by field from AuditEntry's own fields:
 * anything else on the object is ignored, and a value breaking its rule is replaced.
 */
export function formatAuditLine(entry: AuditEntry, now: Date = new Date()): string {
  const line: Record<string, unknown> = {
    time: typeof entry.time === 'string' && ISO_TIME_PATTERN.test(entry.time) ? entry.time : now.toISOString(),
    session: checked(entry.session, SESSION_PATTERN),
    event: EVENTS.has(entry.event) ? entry.event : AUDIT_INVALID_VALUE,
    peer: formatPeer(entry.peer),
    op: checked(entry.op, OP_PATTERN),
    provider: checked(entry.provider, PROVIDER_NAME_PATTERN),
    bucket: checked(entry.bucket, PROVIDER_NAME_PATTERN),
    key: checked(entry.key, KEY_NAME_PATTERN),
    outcome: entry.outcome === 'ok' || isErrorCode(entry.outcome) ? entry.outcome : AUDIT_INVALID_VALUE,
    durationMs:
      typeof entry.durationMs === 'number' && Number.isFinite(entry.durationMs) && entry.durationMs >= 0
        ? Math.round(entry.durationMs * 1000) / 1000
        : undefined,
    reason: checked(entry.reason, REASON_PATTERN),
    protocolVersion: checkedInt(entry.protocolVersion),
    count: checkedInt(entry.count),
    egress: formatEgress(entry.egress),
    source:
      entry.source === undefined
        ? undefined
        : { program: checked(entry.source.program, SOURCE_PROGRAM_PATTERN), exitCode: entry.source.exitCode === null ? null : checkedInt(entry.source.exitCode) },
  }
  return JSON.stringify(line)
}

const SOURCE_PROGRAM_PATTERN = /^[A-Za-z0-9._+-]{1,128}$/
const EGRESS_METHOD_PATTERN = /^[A-Z]{1,16}$/
const EGRESS_HOST_PATTERN = /^[A-Za-z0-9.:*_-]{0,253}$/
/** A path is printable ASCII without quotes or backslashes (the proxy strips the query before). */
const EGRESS_PATH_PATTERN = /^[\x21\x23-\x5b\x5d-\x7e]{0,256}$/

function formatEgress(egress: AuditEntry['egress']): Record<string, unknown> | undefined {
  if (egress === undefined) return undefined
  return {
    rule: checked(egress.rule, REASON_PATTERN),
    method: checked(egress.method, EGRESS_METHOD_PATTERN),
    host: checked(egress.host, EGRESS_HOST_PATTERN),
    path: checked(egress.path, EGRESS_PATH_PATTERN),
    status: checkedInt(egress.status),
    bytesIn: checkedInt(egress.bytesIn),
    bytesOut: checkedInt(egress.bytesOut),
    injected: egress.injected === true,
  }
}

export interface AuditLogOptions {
  maxBytes?: number
  maxFiles?: number
  /** Where write failures go (the host log); never the sandboxed program's terminal. */
  log?: SecurityLog
}

/** Open (or create) a log file for appending: 0600, a regular file owned by us, never through a symlink. */
async function openLogFile(path: string): Promise<{ handle: FileHandle; info: Stats }> {
  const flags = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW
  const handle = await open(path, flags, PRIVATE_FILE_MODE)
  try {
    const info = await handle.stat()
    const uid = typeof process.getuid === 'function' ? process.getuid() : info.uid
    if (!info.isFile() || info.uid !== uid) throw new Error(`${path} is not a regular file owned by uid ${uid}`)
    if ((info.mode & 0o777) !== PRIVATE_FILE_MODE) await handle.chmod(PRIVATE_FILE_MODE)
    return { handle, info }
  } catch (error) {
    await handle.close()
    throw error
  }
}

/**
 * AuditSink writing to a file. write() only queues the entry and its time; one
 * background drain formats and appends whole batches, so the request path neither
 * formats, waits on the disk, nor sees an error (failures go to options.log).
 */
export class AuditLog implements AuditSink {
  readonly path: string
  readonly #maxBytes: number
  readonly #maxFiles: number
  readonly #log: SecurityLog | undefined
  #handle: FileHandle | null
  #inode: number
  /** Entries not yet formatted, and when each was written (ms since the epoch). */
  #queue: AuditEntry[] = []
  #times: number[] = []
  #dropped = 0
  #draining: Promise<void> | null = null
  #closed = false

  private constructor(path: string, handle: FileHandle, info: Stats, options: AuditLogOptions) {
    this.path = path
    this.#handle = handle
    this.#inode = info.ino
    this.#maxBytes = Math.max(1, options.maxBytes ?? DEFAULT_AUDIT_MAX_BYTES)
    this.#maxFiles = Math.max(1, options.maxFiles ?? DEFAULT_AUDIT_MAX_FILES)
    this.#log = options.log
  }

  /** Create the parent directory (0700) and the file (0600) if needed, and open it for appending. */
  static async open(path: string, options: AuditLogOptions = {}): Promise<AuditLog> {
    await ensurePrivateDir(dirname(path))
    const { handle, info } = await openLogFile(path)
    return new AuditLog(path, handle, info, options)
  }

  write(entry: AuditEntry): void {
    if (this.#closed) return
    try {
      if (this.#queue.length >= MAX_AUDIT_QUEUE_LINES) {
        this.#dropped++
        return
      }
      this.#queue.push(entry)
      this.#times.push(Date.now())
      this.#draining ??= this.#drain()
    } catch (error) {
      this.#report(error)
    }
  }

  /** Resolves once every entry written so far is on disk (or has failed and been reported). */
  async flush(): Promise<void> {
    while (this.#draining !== null) await this.#draining
  }

  /** Flush and close; later writes are ignored. */
  async close(): Promise<void> {
    this.#closed = true
    await this.flush()
    const handle = this.#handle
    this.#handle = null
    await handle?.close().catch((error: unknown) => this.#report(error))
  }

  async #drain(): Promise<void> {
    try {
      // Start after the current I/O callbacks: the entries of one event-loop turn go out as one batch.
      await new Promise((resolve) => setImmediate(resolve))
      while (this.#queue.length > 0 || this.#dropped > 0) {
        const entries = this.#queue
        const times = this.#times
        this.#queue = []
        this.#times = []
        const lines: string[] = []
        for (let i = 0; i < entries.length; i++) {
          try {
            lines.push(formatAuditLine(entries[i] as AuditEntry, new Date(times[i] ?? Date.now())))
          } catch (error) {
            this.#report(error)
          }
        }
        if (this.#dropped > 0) {
          lines.push(JSON.stringify({ time: new Date().toISOString(), event: 'audit_dropped', dropped: this.#dropped }))
          this.#dropped = 0
        }
        // A batch may be larger than the cap: it goes out in pieces that each fit one file.
        for (const piece of this.#pieces(lines)) {
          try {
            await this.#append(piece)
          } catch (error) {
            this.#report(error)
          }
        }
      }
    } finally {
      this.#draining = null
    }
  }

  /** Whole lines grouped into buffers of at most maxBytes (a single longer line stays whole). */
  #pieces(lines: string[]): Buffer[] {
    const pieces: Buffer[] = []
    let group: string[] = []
    let bytes = 0
    for (const line of lines) {
      const size = Buffer.byteLength(line) + 1
      if (group.length > 0 && bytes + size > this.#maxBytes) {
        pieces.push(Buffer.from(`${group.join('\n')}\n`, 'utf8'))
        group = []
        bytes = 0
      }
      group.push(line)
      bytes += size
    }
    if (group.length > 0) pieces.push(Buffer.from(`${group.join('\n')}\n`, 'utf8'))
    return pieces
  }

  async #append(data: Buffer): Promise<void> {
    let current: Stats | null = null
    try {
      current = await stat(this.path)
    } catch {
      current = null
    }
    // Another session's writer rotated the file (or it was removed): follow the name.
    if (this.#handle === null || current === null || current.ino !== this.#inode) {
      await this.#reopen()
      current = await stat(this.path)
    }
    if (current.size > 0 && current.size + data.length > this.#maxBytes) {
      await this.#rotate()
    }
    await this.#handle?.write(data)
  }

  async #rotate(): Promise<void> {
    for (let index = this.#maxFiles - 1; index >= 1; index--) {
      await rename(`${this.path}.${index}`, `${this.path}.${index + 1}`).catch(ignoreMissing)
    }
    await rename(this.path, `${this.path}.1`).catch(ignoreMissing)
    await this.#reopen()
  }

  async #reopen(): Promise<void> {
    const old = this.#handle
    this.#handle = null
    await old?.close().catch(() => undefined)
    const { handle, info } = await openLogFile(this.path)
    this.#handle = handle
    this.#inode = info.ino
  }

  #report(error: unknown): void {
    const message = error instanceof Error ? error.message : String(error)
    try {
      this.#log?.(`credproxy: audit log ${this.path}: write failed: ${message}`)
    } catch {
      // A failing logger must not reach the request path either.
    }
  }
}

function ignoreMissing(error: unknown): void {
  if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
}

// ---- Reading (the `credproxy audit` command) -------------------------------------

const PeerSchema = z.looseObject({
  pid: z.number(),
  uid: z.number(),
  gid: z.number(),
  sandboxPid: z.number().optional(),
})

/** A line as read back: the writer's fields, read leniently so older or newer lines still show. */
export const AuditLineSchema = z.looseObject({
  time: z.string(),
  session: z.string().optional(),
  event: z.string(),
  peer: PeerSchema.nullable().optional(),
  op: z.string().optional(),
  provider: z.string().optional(),
  bucket: z.string().optional(),
  key: z.string().optional(),
  outcome: z.string().optional(),
  durationMs: z.number().optional(),
  reason: z.string().optional(),
  protocolVersion: z.number().optional(),
  dropped: z.number().optional(),
  count: z.number().optional(),
})
export type AuditLine = z.infer<typeof AuditLineSchema>

export interface ReadAuditOptions {
  /** Keep waiting for new lines (across rotation) until signal aborts. */
  follow?: boolean
  signal?: AbortSignal
  pollMs?: number
}

function parseLine(text: string): AuditLine | null {
  if (text.trim() === '') return null
  try {
    const parsed = AuditLineSchema.safeParse(JSON.parse(text))
    return parsed.success ? parsed.data : null
  } catch {
    return null
  }
}

/** Rotated files of path, oldest first (audit.log.N ... audit.log.1). */
async function rotatedFiles(path: string): Promise<string[]> {
  const prefix = `${basename(path)}.`
  let names: string[]
  try {
    names = await readdir(dirname(path))
  } catch {
    return []
  }
  return names
    .filter((name) => name.startsWith(prefix) && /^\d+$/.test(name.slice(prefix.length)))
    .map((name) => Number(name.slice(prefix.length)))
    .sort((a, b) => b - a)
    .map((index) => `${path}.${index}`)
}

/** Reads complete lines from an open file, remembering its position and any partial last line. */
class LineReader {
  #position = 0
  #partial = ''
  constructor(readonly handle: FileHandle) {}

  async readLines(): Promise<string[]> {
    const lines: string[] = []
    const buffer = Buffer.allocUnsafe(READ_CHUNK_BYTES)
    for (;;) {
      const { bytesRead } = await this.handle.read(buffer, 0, buffer.length, this.#position)
      if (bytesRead === 0) break
      this.#position += bytesRead
      const parts = (this.#partial + buffer.toString('utf8', 0, bytesRead)).split('\n')
      this.#partial = parts.pop() ?? ''
      lines.push(...parts)
    }
    return lines
  }
}

async function inodeOf(path: string): Promise<number | null> {
  try {
    return (await stat(path)).ino
  } catch {
    return null
  }
}

/** Every entry in the log and its rotated files, oldest first; with follow, then new ones as they come. */
export async function* readAuditEntries(path: string, options: ReadAuditOptions = {}): AsyncGenerator<AuditLine> {
  for (const file of await rotatedFiles(path)) {
    const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW).catch(() => null)
    if (handle === null) continue
    try {
      for (const text of await new LineReader(handle).readLines()) {
        const line = parseLine(text)
        if (line !== null) yield line
      }
    } finally {
      await handle.close()
    }
  }
  let reader: LineReader | null = null
  let inode: number | null = null
  try {
    for (;;) {
      if (reader === null) {
        const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW).catch(() => null)
        if (handle !== null) {
          reader = new LineReader(handle)
          inode = (await handle.stat()).ino
        }
      }
      if (reader !== null) {
        for (const text of await reader.readLines()) {
          const line = parseLine(text)
          if (line !== null) yield line
        }
      }
      if (options.follow !== true || options.signal?.aborted === true) return
      try {
        await sleep(options.pollMs ?? AUDIT_FOLLOW_POLL_MS, undefined, options.signal ? { signal: options.signal } : {})
      } catch {
        return
      }
      // Rotated: finish the old file (its lines were written before the rename), then start the new one.
      if (reader !== null && (await inodeOf(path)) !== inode) {
        for (const text of await reader.readLines()) {
          const line = parseLine(text)
          if (line !== null) yield line
        }
        await reader.handle.close()
        reader = null
      }
    }
  } finally {
    await reader?.handle.close()
  }
}
