// The registry of running broker sessions: one 0600 JSON file per session under
// <stateDir>/sessions, so host commands (`credproxy sessions|grant|revoke`) can find
// a session's control socket. Entries whose process is gone are pruned on listing.
import { constants } from 'node:fs'
import { open, readdir, rename, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import * as z from 'zod'
import { ensurePrivateDir, PRIVATE_FILE_MODE } from '../fs-private.js'
import type { CredproxyPaths } from '../paths.js'
import { isSocketFile, SESSION_ID_PATTERN } from './socket-path.js'
import { CredproxyError } from '../errors.js'
import { safeParseJson } from '../json-file.js'
/** A registry file larger than this is not ours; it is skipped. */
export const MAX_REGISTRY_FILE_BYTES = 64 * 1024

export const SessionRecordSchema = z.strictObject({
  id: z.string().regex(SESSION_ID_PATTERN),
  /** pid of the credproxy process serving the session. */
  pid: z.number().int().positive(),
  socketPath: z.string().min(1).max(4096),
  controlSocketPath: z.string().min(1).max(4096),
  /** ISO time the session started. */
  started: z.string().max(64),
  /** argv[0] of the sandboxed command only: later arguments may hold secrets. */
  command: z.string().max(4096).nullable(),
})
export type SessionRecord = z.infer<typeof SessionRecordSchema>

export function sessionsDir(paths: CredproxyPaths): string {
  return join(paths.stateDir, 'sessions')
}

export function isSessionId(value: string): boolean {
  return SESSION_ID_PATTERN.test(value)
}

function recordPath(paths: CredproxyPaths, id: string): string {
  if (!isSessionId(id)) throw new Error('invalid session id')
  return join(sessionsDir(paths), `${id}.json`)
}

/** Write the session's registry file (temp file + fsync + rename, 0600). Returns its path. */
export async function registerSession(paths: CredproxyPaths, record: SessionRecord): Promise<string> {
  const valid = SessionRecordSchema.parse(record)
  await ensurePrivateDir(sessionsDir(paths))
  const target = recordPath(paths, valid.id)
  const temp = `${target}.${process.pid}.tmp`
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW
  const handle = await open(temp, flags, PRIVATE_FILE_MODE)
  try {
    await handle.writeFile(`${JSON.stringify(valid, null, 2)}\n`, 'utf8')
    await handle.sync()
  } finally {
    await handle.close()
  }
  await rename(temp, target)
  return target
}

export async function unregisterSession(paths: CredproxyPaths, id: string): Promise<void> {
  await unlink(recordPath(paths, id)).catch(() => undefined)
}

/** True when a process with this pid exists (EPERM means it exists but is not ours). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

async function readRecord(path: string): Promise<SessionRecord | null> {
  try {
    const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW)
    try {
      const info = await handle.stat()
      if (!info.isFile() || info.size > MAX_REGISTRY_FILE_BYTES) return null
      const parsed = safeParseJson(await handle.readFile('utf8'), SessionRecordSchema)
      return parsed.ok ? parsed.value : null
    } finally {
      await handle.close()
    }
  } catch {
    return null
  }
}

/** Running sessions, oldest first. Stale entries (process gone, or its control socket gone) are removed. */
export async function listSessions(paths: CredproxyPaths): Promise<SessionRecord[]> {
  let names: string[]
  try {
    names = await readdir(sessionsDir(paths))
  } catch {
    return []
  }
  const sessions: SessionRecord[] = []
  for (const name of names) {
    if (!name.endsWith('.json')) continue
    const path = join(sessionsDir(paths), name)
    const record = await readRecord(path)
    if (record === null || `${record.id}.json` !== name) continue
    // A dead pid, or a live pid without its control socket (the pid was reused after a crash).
    if (!processAlive(record.pid) || !(await isSocketFile(record.controlSocketPath))) {
      await unlink(path).catch(() => undefined)
      await unlink(record.controlSocketPath).catch(() => undefined)
      continue
    }
    sessions.push(record)
  }
  return sessions.sort((a, b) => a.started.localeCompare(b.started))
}

/** The running session with this id, or the only one whose id starts with it (`grant --session 3fa2`). */
export async function findSession(paths: CredproxyPaths, id: string): Promise<SessionRecord> {
  if (!SESSION_ID_PREFIX_PATTERN.test(id)) {
    throw new CredproxyError('USAGE', `${JSON.stringify(id.slice(0, 64))} is not a session id`, { hint: 'Run `credproxy sessions` to list session ids.' })
  }
  const sessions = await listSessions(paths)
  const exact = sessions.find((session) => session.id === id)
  if (exact !== undefined) return exact
  const matches = sessions.filter((session) => session.id.startsWith(id))
  if (matches.length > 1) {
    throw new CredproxyError('USAGE', `${matches.length} running sessions have ids starting with ${id}: ${matches.map((s) => s.id).join(', ')}`, {
      hint: 'Pass more of the id (`credproxy sessions` lists them).',
    })
  }
  const [only] = matches
  if (only === undefined) {
    throw new CredproxyError('NOT_FOUND', `no running session has id ${id} or an id starting with it`, { hint: 'Run `credproxy sessions` to list running sessions.' })
  }
  return only
}

/** What a session id or the start of one may look like. */
const SESSION_ID_PREFIX_PATTERN = /^[A-Za-z0-9_-]{1,64}$/

/** Read a registry file without checking liveness (tests, diagnostics). */
export async function readSessionRecord(paths: CredproxyPaths, id: string): Promise<SessionRecord | null> {
  return readRecord(recordPath(paths, id))
}

