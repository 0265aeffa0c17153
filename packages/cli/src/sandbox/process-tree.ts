// The host pids of a sandbox's process tree, from /proc: used to forward
// signals to the command inside a bwrap sandbox (bwrap itself forwards none).
import { readdirSync, readFileSync } from 'node:fs'

interface ProcStat {
  pid: number
  ppid: number
  pgid: number
}

function readStat(pid: number, procRoot: string): ProcStat | null {
  let stat: string
  try {
    stat = readFileSync(`${procRoot}/${pid}/stat`, 'utf8')
  } catch {
    return null
  }
  // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { pid, ppid: Number(fields[1]), pgid: Number(fields[2]) }
}

function allStats(procRoot: string): ProcStat[] {
  const stats: ProcStat[] = []
  for (const entry of readdirSync(procRoot)) {
    if (!/^\d+$/.test(entry)) continue
    const stat = readStat(Number(entry), procRoot)
    if (stat !== null) stats.push(stat)
  }
  return stats
}

/** Every live descendant of rootPid (not rootPid itself), parents before children. */
export function descendants(rootPid: number, procRoot = '/proc'): number[] {
  const children = new Map<number, number[]>()
  for (const { pid, ppid } of allStats(procRoot)) {
    const list = children.get(ppid) ?? []
    list.push(pid)
    children.set(ppid, list)
  }
  const out: number[] = []
  const queue = [...(children.get(rootPid) ?? [])]
  while (queue.length > 0) {
    const pid = queue.shift() as number
    out.push(pid)
    queue.push(...(children.get(pid) ?? []))
  }
  return out
}

/** true while the process exists (and is not a zombie we could still reap). */
export function isAlive(pid: number, procRoot = '/proc'): boolean {
  try {
    const stat = readFileSync(`${procRoot}/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
  } catch {
    return false
  }
}
