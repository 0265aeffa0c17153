// One reader of /proc/<pid>/stat, shared by the peer check (ancestry walk) and the
// sandbox launcher (process tree, liveness), so the tricky comm parsing lives once.
import { readFileSync } from 'node:fs'

export interface ProcStat {
  pid: number
  /** One letter: R, S, D, Z (zombie), T, ... */
  state: string
  ppid: number
  pgid: number
}

/** The stat line of pid; null when the process is gone, unreadable or the line is malformed. */
export function readProcStat(pid: number, procRoot = '/proc'): ProcStat | null {
  let stat: string
  try {
    stat = readFileSync(`${procRoot}/${pid}/stat`, 'utf8')
  } catch {
    return null
  }
  // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so split after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const state = fields[0] ?? ''
  const ppid = Number(fields[1])
  const pgid = Number(fields[2])
  if (state === '' || !Number.isInteger(ppid) || ppid < 0 || !Number.isInteger(pgid)) return null
  return { pid, state, ppid, pgid }
}
