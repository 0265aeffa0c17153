// Credential sources: what a cached read costs, what one command run costs (fork +
// exec of a tiny script), 200 concurrent reads of a cold source (one run), and the
// RSS growth while a source that prints 2 MiB is refused at the 1 MiB cap.
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SourceCache } from '../packages/cli/src/credentials/source-cache.js'
import { parseSourcesConfig, type SourceConfig } from '../packages/cli/src/credentials/sources-config.js'
import { fmtMs, summarize, timeIt } from './stats.js'

function source(name: string, spec: Record<string, unknown>): SourceConfig {
  const found = parseSourcesConfig(JSON.stringify({ keys: { [name]: spec } }), 'bench').keys.get(name)
  if (found === undefined) throw new Error('no source')
  return found
}

export async function run(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'credproxy-bench-sources-'))
  const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin' }
  try {
    const value = join(dir, 'value.sh')
    await writeFile(value, '#!/bin/sh\necho bench-value\n')
    const big = join(dir, 'big.sh')
    await writeFile(big, `#!/bin/sh\nhead -c ${2 * 1024 * 1024} /dev/zero | tr '\\0' a\n`)
    await chmod(value, 0o755)
    await chmod(big, 0o755)
    const rows: string[][] = []

    const cached = new SourceCache({ env })
    const warm = source('WARM', { command: [value], ttl_seconds: 3600 })
    await cached.get(warm)
    const hits: number[] = []
    for (let i = 0; i < 10_000; i++) hits.push(await timeIt(() => cached.get(warm)))
    const h = summarize(hits)
    rows.push(['cached read', String(h.n), fmtMs(h.p50), fmtMs(h.p99)])

    const runs: number[] = []
    for (let i = 0; i < 30; i++) {
      const cold = new SourceCache({ env })
      runs.push(await timeIt(() => cold.get(source('RUN', { command: [value] }))))
    }
    const r = summarize(runs)
    rows.push(['one command run', String(r.n), fmtMs(r.p50), fmtMs(r.p99)])

    const flights: number[] = []
    let commandRuns = 0
    for (let i = 0; i < 10; i++) {
      const cold = new SourceCache({ env, onRun: () => (commandRuns += 1) })
      const s = source('COLD', { command: [value] })
      flights.push(await timeIt(() => Promise.all(Array.from({ length: 200 }, () => cold.get(s)))))
    }
    const f = summarize(flights)
    rows.push([`200 concurrent, cold (${commandRuns / 10} run each)`, String(f.n), fmtMs(f.p50), fmtMs(f.p99)])

    globalThis.gc?.()
    const before = process.memoryUsage().rss
    let peak = before
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5)
    const refused = await timeIt(() => new SourceCache({ env }).get(source('BIG', { command: [big] })).catch(() => undefined))
    clearInterval(sampler)
    rows.push([`2 MiB refused (peak RSS +${((peak - before) / 1048576).toFixed(1)} MiB)`, '1', fmtMs(refused), fmtMs(refused)])

    const header = ['case', 'n', 'median', 'p99']
    const widths = header.map((_, i) => Math.max(header[i]?.length ?? 0, ...rows.map((row) => row[i]?.length ?? 0)))
    const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ')
    console.log(line(header))
    console.log(line(widths.map((w) => '-'.repeat(w))))
    for (const row of rows) console.log(line(row))
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
