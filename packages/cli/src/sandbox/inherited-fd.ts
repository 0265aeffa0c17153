// Data handed to the sandbox on an inherited descriptor, and keeping every other
// descriptor of this process out of it. A pipe can be read once, so only the first
// process inside would get the session secret; a sealed memfd (Linux) or an unlinked
// private file can be read again (positional reads) by every process that inherits
// the descriptor, and has no path anyone can open later.
import { closeSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync, writeSync, constants as fsConstants } from 'node:fs'
import { openLibc } from '../libc.js'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** fcntl commands and flags (same values on Linux and macOS for the first three). */
const F_GETFD = 1
const F_SETFD = 2
const FD_CLOEXEC = 1
/** Linux memfd sealing (linux/fcntl.h, linux/memfd.h). */
const F_ADD_SEALS = 1033
const F_SEAL_SEAL = 0x1
const F_SEAL_SHRINK = 0x2
const F_SEAL_GROW = 0x4
const F_SEAL_WRITE = 0x8
const MFD_CLOEXEC = 0x1
const MFD_ALLOW_SEALING = 0x2

interface Libc {
  fcntl: (fd: number, cmd: number, ...rest: unknown[]) => number
  memfdCreate: ((name: string, flags: number) => number) | null
}

let libc: Libc | null | undefined

function loadLibc(): Libc | null {
  if (libc !== undefined) return libc
  libc = null
  if (process.platform !== 'linux' && process.platform !== 'darwin') return libc
  try {
    const lib = openLibc()?.lib
    if (lib === undefined) return libc
    const fcntl = lib.func('int fcntl(int fd, int cmd, ...)') as unknown as Libc['fcntl']
    const memfdCreate =
      process.platform === 'linux' ? (lib.func('int memfd_create(const char *name, unsigned int flags)') as unknown as Libc['memfdCreate']) : null
    libc = { fcntl, memfdCreate }
  } catch {
    libc = null
  }
  return libc
}

/**
 * A read-only view of `data` on a fresh descriptor the caller closes after spawn.
 * Linux: a memfd sealed against every write, so reopening /proc/self/fd/N read-write
 * inside cannot change it (file modes would not do: the owner can fchmod an fd).
 * Elsewhere: an already-unlinked 0400 file.
 */
export function openSealedData(data: Uint8Array, dir: string = tmpdir()): number {
  const lib = loadLibc()
  if (lib?.memfdCreate != null) {
    const fd = lib.memfdCreate('credproxy-data', MFD_CLOEXEC | MFD_ALLOW_SEALING)
    if (fd >= 0) {
      try {
        // Positional write: the shared offset stays at 0 for a plain `cat <&3` inside.
        if (writeSync(fd, data, 0, data.length, 0) !== data.length) throw new Error('short write to memfd')
        if (lib.fcntl(fd, F_ADD_SEALS, 'int', F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) !== 0) {
          throw new Error('memfd sealing failed')
        }
        return fd
      } catch (error) {
        closeQuietly(fd)
        throw error
      }
    }
  }
  return openUnlinkedFile(data, dir)
}

/** A read-only fd of an already-unlinked 0400 file holding `data`. The caller closes it after spawn. */
export function openUnlinkedFile(data: Uint8Array, dir: string = tmpdir()): number {
  const scratch = mkdtempSync(join(dir, 'credproxy-fd-'))
  const path = join(scratch, 'data')
  try {
    writeFileSync(path, data, { mode: 0o400, flag: 'wx' })
    return openSync(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW)
  } finally {
    rmSync(scratch, { recursive: true, force: true })
  }
}

/**
 * Mark every descriptor above stderr close-on-exec, so a child gets only 0-2 and the
 * ones passed in its stdio array (libuv dup2s those into place, which clears the flag).
 * Node opens its own descriptors close-on-exec already; what this catches is what the
 * launching shell or parent left open (`exec 100<~`, a stray pipe), which libuv's
 * spawn would otherwise pass through bwrap into the sandbox. Returns false when the
 * descriptors cannot be listed or marked (the caller refuses to launch).
 */
export function closeInheritedFdsOnExec(): boolean {
  const lib = loadLibc()
  if (lib === null) return process.platform !== 'linux' && process.platform !== 'darwin'
  let entries: string[]
  try {
    entries = readdirSync(process.platform === 'linux' ? '/proc/self/fd' : '/dev/fd')
  } catch {
    return false
  }
  for (const entry of entries) {
    const fd = Number(entry)
    if (!Number.isInteger(fd) || fd <= 2) continue
    const flags = lib.fcntl(fd, F_GETFD)
    // -1: the directory listing's own descriptor, closed by now.
    if (flags < 0 || (flags & FD_CLOEXEC) !== 0) continue
    if (lib.fcntl(fd, F_SETFD, 'int', flags | FD_CLOEXEC) !== 0) return false
  }
  return true
}

export function closeQuietly(fd: number): void {
  try {
    closeSync(fd)
  } catch {
    // Already closed.
  }
}
