// Path containment, shared by the launchers and the shim (its own file, so the shim need not import bwrap.ts).
import { isAbsolute, relative } from 'node:path'

/** true when `inner` is `outer` or lies below it. */
export function isWithin(inner: string, outer: string): boolean {
  const rel = relative(outer, inner)
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel))
}
