// The audit log writer: one JSON line per operation and per refused connection, in a
// 0600 file under the state dir, size-capped with rotation, written off the request path.
// The line format is audit-format.ts; reading it back is audit-reader.ts.
import { constants, type Stats } from 'node:fs'
import { open, rename, stat, type FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'
import { ensurePrivateDir, PRIVATE_FILE_MODE } from '../fs-private.js'
import type { AuditEntry, AuditSink } from '../broker/hooks.js'
import type { SecurityLog } from '../broker/peer-credentials.js'
import { formatAuditLine } from './audit-format.js'

/** A log file is rotated before a write would take it past this size. */
export const DEFAULT_AUDIT_MAX_BYTES = 10 * 1024 * 1024
/** Rotated files kept beside the live one: audit.log.1 (newest) ... audit.log.N. */
export const DEFAULT_AUDIT_MAX_FILES = 5
/** Lines waiting for the disk; beyond this, entries are counted and dropped (one audit_dropped line says how many). */
export const MAX_AUDIT_QUEUE_LINES = 10_000

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
