// Leftovers of a credproxy that was SIGKILLed (or crashed hard): its session
// directory with broker.sock, its control socket and its registry entry. `run`,
// `serve` and `sessions` prune them; a session that is still starting (socket not
// yet bound, or bound and live but not yet registered) is never touched.
import { lstat, readdir, rmdir, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import type { CredproxyPaths } from '../paths.js'
import { listSessions, type SessionRecord } from './session-registry.js'
import { isSocketLive, SESSION_ID_PATTERN, SOCKET_FILE_NAME } from './socket-path.js'

const CONTROL_SOCKET_NAME = /^control-([A-Za-z0-9_-]{1,128})\.sock$/

async function isSocketFile(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isSocket()
  } catch {
    return false
  }
}

/** A socket file nobody accepts connections on. */
async function isDeadSocket(path: string): Promise<boolean> {
  return (await isSocketFile(path)) && !(await isSocketLive(path))
}

/**
 * Remove stale session directories, control sockets and registry entries, and
 * return the live sessions. `removed` gets each path taken away (for a log line).
 */
export async function pruneStaleSessions(paths: CredproxyPaths, removed?: (path: string) => void): Promise<SessionRecord[]> {
  // Drops registry entries whose credproxy pid is dead, with their control sockets.
  const live = await listSessions(paths)
  const liveIds = new Set(live.map((record) => record.id))
  let entries
  try {
    entries = await readdir(paths.runtimeDir, { withFileTypes: true })
  } catch {
    return live
  }
  for (const entry of entries) {
    const path = join(paths.runtimeDir, entry.name)
    if (entry.isDirectory() && SESSION_ID_PATTERN.test(entry.name) && !liveIds.has(entry.name)) {
      const socket = join(path, SOCKET_FILE_NAME)
      // No socket yet: a session being set up right now, or not ours; left alone.
      if (!(await isDeadSocket(socket))) continue
      await unlink(socket).catch(() => undefined)
      // Non-recursive: anything else in the directory is not ours to delete.
      await rmdir(path).then(
        () => removed?.(path),
        () => undefined,
      )
      continue
    }
    const control = CONTROL_SOCKET_NAME.exec(entry.name)
    if (entry.isSocket() && control !== null && !liveIds.has(control[1] ?? '') && (await isDeadSocket(path))) {
      await unlink(path).then(
        () => removed?.(path),
        () => undefined,
      )
    }
  }
  return live
}
