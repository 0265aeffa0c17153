// The session secret reaches the sandboxed process on an inherited file descriptor
// (CREDPROXY_SECRET_FD), or for other launchers in a host-written 0600 file
// (CREDPROXY_SECRET_FILE). It is read once per process and kept in memory only.
import { closeSync, fstatSync, openSync, readSync, constants as fsConstants } from 'node:fs'
import { ProxyError } from '../protocol/errors.js'
import { parseSessionSecret } from '../protocol/handshake.js'

export const SECRET_FD_ENV = 'CREDPROXY_SECRET_FD'
export const SECRET_FILE_ENV = 'CREDPROXY_SECRET_FILE'
/** More than this from the fd or file is not a session secret (64 hex characters plus a newline). */
export const MAX_SECRET_INPUT_BYTES = 4_096
/** How long a non-blocking secret fd may stay empty before we give up. */
export const SECRET_FD_WAIT_MS = 2_000
const SECRET_FD_POLL_MS = 5

// fds 0-2 are stdio; a secret fd is always one the launcher added.
function parseFd(text: string): number | undefined {
  const fd = Number(text)
  return Number.isInteger(fd) && fd >= 3 && fd <= 65_535 ? fd : undefined
}

const HINT = 'start the sandbox with `credproxy run`, which hands the secret over'

let cached: Buffer | undefined

/**
 * The session secret for this process. The first call reads it (fd: to EOF or the
 * first newline, then closes the fd and deletes CREDPROXY_SECRET_FD from `env`);
 * later calls return the same secret. Throws ProxyError('UNAUTHORIZED') with a
 * clear message when none was handed over or it is malformed.
 */
export function readSessionSecret(env: NodeJS.ProcessEnv = process.env): Buffer {
  if (cached !== undefined) {
    delete env[SECRET_FD_ENV]
    return cached
  }
  const fdText = env[SECRET_FD_ENV]
  const file = env[SECRET_FILE_ENV]
  let secret: Buffer
  if (fdText !== undefined) {
    delete env[SECRET_FD_ENV]
    const fd = parseFd(fdText)
    if (fd === undefined) throw new ProxyError('UNAUTHORIZED', `${SECRET_FD_ENV} must name an inherited file descriptor (3 or above); ${HINT}`)
    secret = parse(readFd(fd), `${SECRET_FD_ENV}=${fd}`)
  } else if (file !== undefined && file !== '') {
    secret = parse(readPrivateFile(file), `${SECRET_FILE_ENV} (${file})`)
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

/** Read to EOF or the first newline, whichever comes first, then close the fd (always). */
function readFd(fd: number): string {
  const buffer = Buffer.alloc(MAX_SECRET_INPUT_BYTES + 1)
  let length = 0
  try {
    // `credproxy run` hands over an unlinked file shared by every process that
    // inherits the fd: read at explicit offsets (pread) so the shared file position
    // stays at 0 for the next process in the sandbox. A pipe has one reader only.
    const seekable = isRegularFile(fd)
    const deadline = Date.now() + SECRET_FD_WAIT_MS
    while (length <= MAX_SECRET_INPUT_BYTES && !buffer.subarray(0, length).includes(0x0a)) {
      let n: number
      try {
        n = readSync(fd, buffer, length, buffer.length - length, seekable ? length : null)
      } catch (error) {
        // A non-blocking pipe with nothing written yet: wait briefly without spinning.
        if ((error as NodeJS.ErrnoException).code === 'EAGAIN' && Date.now() < deadline) {
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, SECRET_FD_POLL_MS)
          continue
        }
        throw new ProxyError('UNAUTHORIZED', `cannot read the session secret from ${SECRET_FD_ENV}=${fd} (${(error as NodeJS.ErrnoException).code ?? 'error'}); ${HINT}`)
      }
      if (n === 0) break
      length += n
    }
  } finally {
    try {
      closeSync(fd)
    } catch {
      // Already closed: nothing more to protect.
    }
  }
  if (length > MAX_SECRET_INPUT_BYTES) throw new ProxyError('UNAUTHORIZED', `${SECRET_FD_ENV}=${fd} carried more than a session secret; ${HINT}`)
  return buffer.subarray(0, length).toString('utf8')
}

function isRegularFile(fd: number): boolean {
  try {
    return fstatSync(fd).isFile()
  } catch {
    return false
  }
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
