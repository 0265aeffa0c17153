// Where a session's socket lives and how it is bound without ever being reachable
// with wider permissions: bind inside a fresh 0700 directory, chmod 0600, and only
// then (explicit paths) rename it into place.
import { randomBytes } from 'node:crypto'
import { chmod, lstat, mkdir, mkdtemp, rename, rmdir, unlink } from 'node:fs/promises'
import { connect, type Server } from 'node:net'
import { dirname, join } from 'node:path'
import { MAX_SOCKET_PATH_BYTES } from '@credproxy/core'
import { ensurePrivateDir, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from '../fs-private.js'
import { CredproxyError } from '../errors.js'

export const SOCKET_FILE_NAME = 'broker.sock'
/** How long probing a leftover socket may take before it counts as dead. */
export const STALE_PROBE_TIMEOUT_MS = 500
/**
 * Session ids as the server makes them (16 base64url characters) and the only ones
 * it, the registry and `--session ID` accept: an id becomes a directory and file name.
 */
export const SESSION_ID_PATTERN = /^[A-Za-z0-9_-]{8,64}$/

export function generateSessionId(): string {
  // Hex, not base64url: an id starting with "-" would read as a flag in `credproxy grant --session ID`.
  return randomBytes(12).toString('hex')
}

export interface BoundSocket {
  socketPath: string
  /** The per-session directory this server created (removed on stop), if any. */
  sessionDir: string | undefined
  /** Identity of the socket inode, so stop() never unlinks a successor's socket. */
  ino: number
  dev: number
}

function checkLength(path: string): void {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new CredproxyError(
      'FAILED',
      `socket path ${path} is longer than ${MAX_SOCKET_PATH_BYTES} bytes, the limit of Unix sockets`,
      { hint: 'Use a shorter --socket path, or set CREDPROXY_HOME or XDG_RUNTIME_DIR to a shorter directory.' },
    )
  }
}

/** A socket file is at path (not followed through a symlink). */
export async function isSocketFile(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isSocket()
  } catch {
    return false
  }
}

/** true when something accepts connections on path. */
export function isSocketLive(path: string, timeoutMs: number = STALE_PROBE_TIMEOUT_MS): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(path)
    const done = (live: boolean): void => {
      clearTimeout(timer)
      probe.destroy()
      resolve(live)
    }
    const timer = setTimeout(() => done(false), timeoutMs)
    probe.once('connect', () => done(true))
    probe.once('error', () => done(false))
  })
}

/** Remove a leftover socket nobody listens on; refuse a live one or a non-socket. */
export async function clearStaleSocket(path: string): Promise<void> {
  let info
  try {
    info = await lstat(path)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return
    throw error
  }
  if (!info.isSocket()) {
    throw new CredproxyError('FAILED', `${path} exists and is not a socket`, { hint: 'Choose another --socket path or move that file away.' })
  }
  if (await isSocketLive(path)) {
    throw new CredproxyError(
      'UNAVAILABLE',
      `another broker is already listening on ${path}`,
      { hint: 'Stop that broker first, or choose another --socket path.' },
    )
  }
  await unlink(path)
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => reject(error)
    server.once('error', onError)
    server.listen(path, () => {
      server.off('error', onError)
      resolve()
    })
  })
}

/** Default layout: <runtimeDir>/<sessionId>/broker.sock, directory 0700, socket 0600. */
export async function bindInSessionDir(server: Server, runtimeDir: string, sessionId: string): Promise<BoundSocket> {
  const sessionDir = join(runtimeDir, sessionId)
  const socketPath = join(sessionDir, SOCKET_FILE_NAME)
  checkLength(socketPath)
  await ensurePrivateDir(runtimeDir)
  // Non-recursive with mode 0700: the directory never exists with wider permissions,
  // and an existing one (someone else's) is an error rather than reused.
  await mkdir(sessionDir, { mode: PRIVATE_DIR_MODE })
  try {
    await chmod(sessionDir, PRIVATE_DIR_MODE)
    await listen(server, socketPath)
    await chmod(socketPath, PRIVATE_FILE_MODE)
    const info = await lstat(socketPath)
    return { socketPath, sessionDir, ino: info.ino, dev: info.dev }
  } catch (error) {
    await rmdir(sessionDir).catch(() => undefined)
    throw error
  }
}

/** Explicit path: bind in a private scratch directory next to it, chmod, rename into place. */
export async function bindAtPath(server: Server, socketPath: string): Promise<BoundSocket> {
  checkLength(socketPath)
  await clearStaleSocket(socketPath)
  const scratch = await mkdtemp(join(dirname(socketPath), '.cp-'))
  const temp = join(scratch, 's')
  checkLength(temp)
  try {
    await chmod(scratch, PRIVATE_DIR_MODE)
    await listen(server, temp)
    await chmod(temp, PRIVATE_FILE_MODE)
    await rename(temp, socketPath)
  } finally {
    await rmdir(scratch).catch(() => undefined)
  }
  const info = await lstat(socketPath)
  return { socketPath, sessionDir: undefined, ino: info.ino, dev: info.dev }
}

/** Remove the socket (if it is still ours) and the session directory (if we made it). */
export async function unbind(bound: BoundSocket): Promise<void> {
  try {
    const info = await lstat(bound.socketPath)
    if (info.ino === bound.ino && info.dev === bound.dev) await unlink(bound.socketPath)
  } catch {
    // Already gone.
  }
  if (bound.sessionDir !== undefined) await rmdir(bound.sessionDir).catch(() => undefined)
}
