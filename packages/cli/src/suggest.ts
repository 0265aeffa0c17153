// "Did you mean": the closest known spelling of a mistyped command or option.

/** Edit distance (insert, delete, substitute, swap of neighbours). */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)))
  for (let i = 1; i <= a.length; i += 1) {
    for (let j = 1; j <= b.length; j += 1) {
      const row = d[i] as number[]
      const up = d[i - 1] as number[]
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      row[j] = Math.min((up[j] as number) + 1, (row[j - 1] as number) + 1, (up[j - 1] as number) + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j] as number, ((d[i - 2] as number[])[j - 2] as number) + 1)
    }
  }
  return (d[a.length] as number[])[b.length] as number
}

/** The one candidate `typed` most likely meant: a unique prefix match, else the nearest within 2 edits (ties: none). */
export function closest(typed: string, candidates: readonly string[]): string | undefined {
  if (typed === '') return undefined
  const prefixed = candidates.filter((c) => c.startsWith(typed))
  if (prefixed.length === 1) return prefixed[0]
  let best: string | undefined
  let bestDistance = Math.min(2, Math.max(1, Math.floor(typed.length / 3)))
  let tie = false
  for (const candidate of candidates) {
    const dist = distance(typed, candidate)
    if (dist < bestDistance || (dist === bestDistance && best === undefined)) {
      best = candidate
      bestDistance = dist
      tie = false
    } else if (dist === bestDistance) tie = true
  }
  return tie ? undefined : best
}
