// Private directories and files: 0700 / 0600, repaired when found wider, refused
// when owned by someone else.
import { chmod, lstat, mkdir, readFile } from 'node:fs/promises'
import { CredproxyError } from './errors.js'

export const PRIVATE_DIR_MODE = 0o700
export const PRIVATE_FILE_MODE = 0o600

/** Create (recursively) or check a directory: owned by us, not a symlink, mode 0700. */
export async function ensurePrivateDir(path: string): Promise<void> {
  await mkdir(path, { recursive: true, mode: PRIVATE_DIR_MODE })
  const info = await lstat(path)
  if (!info.isDirectory()) {
    throw new CredproxyError('FAILED', `${path} is not a directory`, { hint: `Move it away so credproxy can create its directory there.` })
  }
  const uid = typeof process.getuid === 'function' ? process.getuid() : info.uid
  if (info.uid !== uid) {
    throw new CredproxyError(
      'FAILED',
      `${path} is owned by uid ${info.uid}, not by you (uid ${uid}); refusing to keep credentials there`,
      { hint: `Remove it or set CREDPROXY_HOME to a directory you own.` },
    )
  }
  if ((info.mode & 0o777) !== PRIVATE_DIR_MODE) await chmod(path, PRIVATE_DIR_MODE)
}

/** Repair a file's mode to 0600 if wider; refuse a file owned by another uid. */
export async function ensurePrivateFile(path: string): Promise<void> {
  const info = await lstat(path)
  const uid = typeof process.getuid === 'function' ? process.getuid() : info.uid
  if (!info.isFile()) throw new CredproxyError('FAILED', `${path} is not a regular file`, { hint: `Remove it; credproxy recreates it.` })
  if (info.uid !== uid) {
    throw new CredproxyError('FAILED', `${path} is owned by uid ${info.uid}, not by you (uid ${uid})`, { hint: `Remove it or fix its owner.` })
  }
  if ((info.mode & 0o777) !== PRIVATE_FILE_MODE) await chmod(path, PRIVATE_FILE_MODE)
}

/** A private file's text after ensurePrivateFile, or null when it does not exist. */
export async function readPrivateFile(path: string): Promise<string | null> {
  try {
    await ensurePrivateFile(path)
    return await readFile(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw error
  }
}
