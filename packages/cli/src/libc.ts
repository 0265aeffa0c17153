// The C library through koffi (prebuilt FFI, no compiler), opened once per process for
// every caller: peer credentials, flock, close-on-exec and memfd, the child subreaper.
// null where there is no libc to bind (not Linux or macOS, or koffi missing).
import { createRequire } from 'node:module'

export interface Libc {
  koffi: typeof import('koffi')
  lib: ReturnType<(typeof import('koffi'))['load']>
}

let libc: Libc | null | undefined

export function openLibc(): Libc | null {
  if (libc !== undefined) return libc
  libc = null
  if (process.platform !== 'linux' && process.platform !== 'darwin') return libc
  try {
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi')
    libc = { koffi, lib: koffi.load(process.platform === 'linux' ? 'libc.so.6' : '/usr/lib/libSystem.B.dylib') }
  } catch {
    libc = null
  }
  return libc
}
