// The session secret reaches the sandboxed process in a read-only file only the
// sandbox sees (CREDPROXY_SECRET_FILE: every descendant can read it, whoever spawned
// it), or on an inherited descriptor (CREDPROXY_SECRET_FD) that is verified before it
// is read or closed: a child whose parent did not pass the fd on sees someone else's
// fd there (libuv's own pipe in Node). Read once per process and kept in memory only.
import { closeSync, fstatSync, openSync, readSync, constants as fsConstants } from 'node:fs'
import { ProxyError } from '../protocol/errors.js'
import { parseSessionSecret, SESSION_SECRET_BYTES } from '../protocol/handshake.js'

export const SECRET_FD_ENV = 'CREDPROXY_SECRET_FD'
export const SECRET_FILE_ENV = 'CREDPROXY_SECRET_FILE'
/** More than this in the file is not a session secret (64 hex characters plus a newline). */
export const MAX_SECRET_INPUT_BYTES = 4_096

// fds 0-2 are stdio; a secret fd is always one the launcher added.
function parseFd(text: string): number | undefined {
  const fd = Number(text)
  return Number.isInteger(fd) && fd >= 3 && fd <= 65_535 ? fd : undefined
}

const HINT = 'start the sandbox with `credproxy run`, which hands the secret over'

let cached: Buffer | undefined

/**
 * The session secret for this process. The first call reads it (the file when
 * CREDPROXY_SECRET_FILE is set, else the fd once fstat shows it is a secret-sized
 * file, which is then closed) and deletes CREDPROXY_SECRET_FD from `env`; later
 * calls return the same secret. Throws ProxyError('UNAUTHORIZED') with a
 * clear message when none was handed over or it is malformed.
 */
export function readSessionSecret(env: NodeJS.ProcessEnv = process.env): Buffer {
  if (cached !== undefined) {
    delete env[SECRET_FD_ENV]
    return cached
  }
  const fdText = env[SECRET_FD_ENV]
  const file = env[SECRET_FILE_ENV]
  // Our own children must not trust an fd number they will not inherit.
  delete env[SECRET_FD_ENV]
  let secret: Buffer
  if (file !== undefined && file !== '') {
    // The file reaches every descendant; an fd named beside it is left alone (not ours to close).
    secret = parse(readPrivateFile(file), `${SECRET_FILE_ENV} (${file})`)
  } else if (fdText !== undefined) {
    const fd = parseFd(fdText)
    if (fd === undefined) throw new ProxyError('UNAUTHORIZED', `${SECRET_FD_ENV} must name an inherited file descriptor (3 or above); ${HINT}`)
    secret = parse(readFd(fd), `${SECRET_FD_ENV}=${fd}`)
  } else {
    throw new ProxyError('UNAUTHORIZED', `no session secret was handed to this process (${SECRET_FD_ENV} or ${SECRET_FILE_ENV}); ${HINT}`)
  }
  cached = secret
  return secret
}

function parse(text: string, source: string): Buffer {
  try {
    return parseSessionSecret(text)
  } catch {
    throw new ProxyError('UNAUTHORIZED', `${source} did not carry a session secret (64 lowercase hex characters); ${HINT}`)
  }
}

/** 64 hex characters, optionally with a newline: the only sizes a handed-over secret has. */
const SECRET_SIZES = [SESSION_SECRET_BYTES * 2, SESSION_SECRET_BYTES * 2 + 1]

/**
 * Read the fd only once fstat shows what a launcher hands over (a regular file or
 * memfd of a secret's size), then close it. Anything else (a pipe, socket, eventfd,
 * a closed fd) belongs to someone else in this process: neither read nor closed.
 */
function readFd(fd: number): string {
  let size: number
  try {
    const stat = fstatSync(fd)
    if (!stat.isFile()) throw new Error('not a file')
    size = stat.size
  } catch {
    throw new ProxyError('UNAUTHORIZED', `${SECRET_FD_ENV}=${fd} does not name the session secret here (its parent process did not pass fd ${fd} on, as Node's child_process and Python's subprocess do not); use ${SECRET_FILE_ENV}, which \`credproxy run\` sets for every process in its sandbox`)
  }
  if (!SECRET_SIZES.includes(size)) {
    throw new ProxyError('UNAUTHORIZED', `${SECRET_FD_ENV}=${fd} is a ${size}-byte file, not a session secret (64 lowercase hex characters); ${HINT}`)
  }
  const buffer = Buffer.alloc(size)
  let length = 0
  try {
    // Positional reads: every process inheriting the same open file shares its position.
    while (length < size) {
      const n = readSync(fd, buffer, length, size - length, length)
      if (n === 0) break
      length += n
    }
  } catch (error) {
    throw new ProxyError('UNAUTHORIZED', `cannot read the session secret from ${SECRET_FD_ENV}=${fd} (${(error as NodeJS.ErrnoException).code ?? 'error'}); ${HINT}`)
  } finally {
    try {
      closeSync(fd)
    } catch {
      // Already closed: nothing more to protect.
    }
  }
  return buffer.subarray(0, length).toString('utf8')
}

/** The file must be a regular file of this user that nobody else can read or write. */
function readPrivateFile(path: string): string {
  let fd: number
  try {
    fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW)
  } catch (error) {
    throw new ProxyError('UNAUTHORIZED', `cannot open ${SECRET_FILE_ENV} (${path}): ${(error as NodeJS.ErrnoException).code ?? 'error'}; ${HINT}`)
  }
  try {
    const stat = fstatSync(fd)
    const uid = process.getuid?.()
    if (!stat.isFile() || (stat.mode & 0o077) !== 0 || (uid !== undefined && stat.uid !== uid)) {
      throw new ProxyError('UNAUTHORIZED', `${SECRET_FILE_ENV} (${path}) must be a regular 0600 file owned by this user`)
    }
    if (stat.size > MAX_SECRET_INPUT_BYTES) throw new ProxyError('UNAUTHORIZED', `${SECRET_FILE_ENV} (${path}) is too large to be a session secret`)
    const buffer = Buffer.alloc(MAX_SECRET_INPUT_BYTES)
    const n = readSync(fd, buffer, 0, buffer.length, 0)
    return buffer.subarray(0, n).toString('utf8')
  } finally {
    closeSync(fd)
  }
}
