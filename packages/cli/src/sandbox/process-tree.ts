// The host pids of a sandbox's process tree, from /proc: used to forward
// signals to the command inside a bwrap sandbox (bwrap itself forwards none).
import { readdirSync } from 'node:fs'
import { readProcStat, type ProcStat } from '../proc-stat.js'

function allStats(procRoot: string): ProcStat[] {
  const stats: ProcStat[] = []
  for (const entry of readdirSync(procRoot)) {
    if (!/^\d+$/.test(entry)) continue
    const stat = readProcStat(Number(entry), procRoot)
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
  const stat = readProcStat(pid, procRoot)
  return stat !== null && stat.state !== 'Z'
}
