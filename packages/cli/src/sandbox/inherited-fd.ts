// Data handed to the sandbox on an inherited descriptor. A pipe can be read once,
// so only the first process inside would get the session secret; an unlinked
// private file can be read again (positional reads) by every process that
// inherits the descriptor, and still has no path anyone can open later.
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync, constants as fsConstants } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** A read-only fd of an already-unlinked 0600 file holding `data`. The caller closes it after spawn. */
export function openUnlinkedFile(data: Uint8Array, dir: string = tmpdir()): number {
  const scratch = mkdtempSync(join(dir, 'credproxy-fd-'))
  const path = join(scratch, 'data')
  try {
    writeFileSync(path, data, { mode: 0o600, flag: 'wx' })
    return openSync(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW)
  } finally {
    rmSync(scratch, { recursive: true, force: true })
  }
}

export function closeQuietly(fd: number): void {
  try {
    closeSync(fd)
  } catch {
    // Already closed.
  }
}
