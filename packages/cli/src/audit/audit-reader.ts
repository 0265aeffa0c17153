// Reading the audit log back (the `credproxy audit` command): every file, oldest first,
// optionally following new lines across rotation. Unreadable lines are skipped.
import { constants } from 'node:fs'
import { open, readdir, stat, type FileHandle } from 'node:fs/promises'
import { basename, dirname } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { safeParseJson } from '../json-file.js'
import { AuditLineSchema, type AuditLine } from './audit-format.js'

/** How often `readAuditEntries(..., { follow })` looks for new lines. */
export const AUDIT_FOLLOW_POLL_MS = 200
const READ_CHUNK_BYTES = 64 * 1024

export interface ReadAuditOptions {
  /** Keep waiting for new lines (across rotation) until signal aborts. */
  follow?: boolean
  signal?: AbortSignal
  pollMs?: number
}

function parseLine(text: string): AuditLine | null {
  if (text.trim() === '') return null
  const parsed = safeParseJson(text, AuditLineSchema)
  return parsed.ok ? parsed.value : null
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
