// bwrap's outer process exits as soon as the sandboxed command has, without waiting for
// its own child (the init of the new pid namespace), which the kernel then hands to the
// nearest subreaper or pid 1. Where pid 1 reaps slowly or never (a container shell, a VM
// agent), `<defunct>` bwrap processes pile up in the caller's session. `run` makes itself
// a child subreaper, so those inits become its children, and reaps them before it returns.
import { readdirSync, readFileSync } from 'node:fs'
import { openLibc } from '../libc.js'
import { setTimeout as sleep } from 'node:timers/promises'
import { readProcStat } from '../proc-stat.js'

/** linux/prctl.h, sys/wait.h. */
const PR_SET_CHILD_SUBREAPER = 36
const WNOHANG = 1

interface Libc {
  prctl: (option: number, arg2: number, arg3: number, arg4: number, arg5: number) => number
  waitpid: (pid: number, status: null, options: number) => number
}

let libc: Libc | null | undefined

function loadLibc(): Libc | null {
  if (libc !== undefined) return libc
  libc = null
  if (process.platform !== 'linux') return libc
  try {
    const lib = openLibc()?.lib
    if (lib === undefined) return libc
    libc = {
      prctl: lib.func('int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5)') as unknown as Libc['prctl'],
      waitpid: lib.func('int waitpid(int pid, void *status, int options)') as unknown as Libc['waitpid'],
    }
  } catch {
    libc = null
  }
  return libc
}

/** Turn the subreaper role on or off for this process; false where it is not available (not Linux, no koffi). */
export function setChildSubreaper(on: boolean): boolean {
  const lib = loadLibc()
  return lib !== null && lib.prctl(PR_SET_CHILD_SUBREAPER, on ? 1 : 0, 0, 0, 0) === 0
}

/**
 * Children of this process that are the init of a deeper pid namespace: orphans handed
 * to us as subreaper. Node never spawns into a new pid namespace, so none of these is a
 * child libuv waits for (reaping one of those would lose its exit status).
 */
export function orphanedNamespaceInits(procRoot = '/proc'): number[] {
  const found: number[] = []
  for (const pid of childrenOf(process.pid, procRoot)) {
    let status: string
    try {
      status = readFileSync(`${procRoot}/${pid}/status`, 'utf8')
    } catch {
      continue
    }
    // "NSpid:\t<host pid>\t<pid in each nested namespace>": pid 1 of a nested namespace.
    const nspids = /^NSpid:\s*(.*)$/m.exec(status)?.[1]?.trim().split(/\s+/) ?? []
    if (nspids.length > 1 && nspids.at(-1) === '1') found.push(pid)
  }
  return found
}

/** This process's children: from /proc/<pid>/task/<tid>/children, else a scan of /proc (a kernel without CONFIG_PROC_CHILDREN). */
function childrenOf(self: number, procRoot: string): number[] {
  const read = (tid: string): string | null => {
    try {
      return readFileSync(`${procRoot}/${self}/task/${tid}/children`, 'utf8')
    } catch {
      return null
    }
  }
  if (read(String(self)) !== null) {
    const children: number[] = []
    let tids: string[] = []
    try {
      tids = readdirSync(`${procRoot}/${self}/task`)
    } catch {
      // Listed below as none.
    }
    // A thread that exits meanwhile reads as null: it has no children to hand over.
    for (const tid of tids) for (const pid of (read(tid) ?? '').split(' ')) if (pid !== '') children.push(Number(pid))
    return children
  }
  let entries: string[]
  try {
    entries = readdirSync(procRoot)
  } catch {
    return []
  }
  return entries.filter((entry) => /^\d+$/.test(entry) && readProcStat(Number(entry), procRoot)?.ppid === self).map(Number)
}

/**
 * Reap the namespace inits handed to this process, waiting up to timeoutMs for those
 * still exiting (bwrap's --die-with-parent has already killed them). Returns the pids
 * still not reaped (none in the normal case).
 */
export async function reapOrphanedNamespaceInits(timeoutMs = 2_000, procRoot = '/proc'): Promise<number[]> {
  const lib = loadLibc()
  if (lib === null) return []
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const left = orphanedNamespaceInits(procRoot).filter((pid) => lib.waitpid(pid, null, WNOHANG) === 0)
    if (left.length === 0 || Date.now() >= deadline) return left
    await sleep(10)
  }
}
