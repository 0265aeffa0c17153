// API: writeSessionSecretFile(path: string, secret: Buffer): Promise<void> (for `credproxy serve --secret-file PATH`).
// Hands the session secret to launchers credproxy does not control: a NEW 0600 file,
// created with O_EXCL so an existing file (or a symlink planted there) is never written through.
import { constants } from 'node:fs'
import { open, unlink } from 'node:fs/promises'
import { SESSION_SECRET_BYTES } from '@credproxy/core'
import { PRIVATE_FILE_MODE } from '../fs-private.js'
import { CredproxyError, UsageError } from '../errors.js'

/** Write `secret` as 64 lowercase hex characters and a newline to a new 0600 file; refuses to overwrite. */
export async function writeSessionSecretFile(path: string, secret: Buffer): Promise<void> {
  if (secret.length !== SESSION_SECRET_BYTES) throw new Error(`session secret must be ${SESSION_SECRET_BYTES} bytes`)
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW
  let handle
  try {
    handle = await open(path, flags, PRIVATE_FILE_MODE)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'EEXIST' || code === 'ELOOP') {
      throw new UsageError(`${path} already exists; refusing to overwrite it with a session secret`, 'Remove it or pass a new path to --secret-file.')
    }
    throw new CredproxyError('FAILED', `cannot create secret file ${path}: ${code ?? 'error'}`, { hint: 'Pass --secret-file a path in a directory you own.' })
  }
  try {
    // umask may narrow the mode but never widen it; set it exactly anyway.
    await handle.chmod(PRIVATE_FILE_MODE)
    await handle.writeFile(`${secret.toString('hex')}\n`, 'utf8')
    await handle.sync()
    await handle.close()
  } catch (error) {
    await handle.close().catch(() => undefined)
    await unlink(path).catch(() => undefined)
    throw error
  }
}
