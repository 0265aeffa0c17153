// Leftovers of a credproxy that was SIGKILLed (or crashed hard): its session
// directory with broker.sock, its control socket and its registry entry. `run`,
// `serve` and `sessions` prune them; a session that is still starting (socket not
// yet bound, or bound and live but not yet registered) is never touched.
import { readdir, rmdir, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import type { CredproxyPaths } from '../paths.js'
import { listSessions, type SessionRecord } from './session-registry.js'
import { SANDBOX_SECRET_FILE } from '../sandbox/types.js'
import { isSocketFile, isSocketLive, SESSION_ID_PATTERN, SOCKET_FILE_NAME } from './socket-path.js'

const CONTROL_SOCKET_NAME = /^control-([A-Za-z0-9_-]{1,128})\.sock$/

/** A socket file nobody accepts connections on. */
async function isDeadSocket(path: string): Promise<boolean> {
  return (await isSocketFile(path)) && !(await isSocketLive(path))
}

/**
 * true inside a credproxy sandbox: its launcher always sets the socket and the secret
 * (an fd, or bwrap's in-sandbox file). There the host's pids are not ours to see
 * (every one would look dead), so nothing is pruned.
 */
export function insideCredproxySandbox(env: NodeJS.ProcessEnv): boolean {
  return env['CREDPROXY_SOCKET'] !== undefined && (env['CREDPROXY_SECRET_FD'] !== undefined || env['CREDPROXY_SECRET_FILE'] === SANDBOX_SECRET_FILE)
}

/**
 * Remove stale session directories, control sockets and registry entries, and
 * return the live sessions. `removed` gets each path taken away (for a log line).
 * Inside a sandbox it removes nothing and lists nothing.
 */
export async function pruneStaleSessions(
  paths: CredproxyPaths,
  removed?: (path: string) => void,
  env: NodeJS.ProcessEnv = process.env,
): Promise<SessionRecord[]> {
  if (insideCredproxySandbox(env)) return []
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
