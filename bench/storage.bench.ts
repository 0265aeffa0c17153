// Host storage latency per backend: saveToken / getToken / saveKey / getKey,
// median and p99. The keyring row runs only when a Secret Service answers
// (`npm run bench` runs under scripts/with-secret-service.sh).
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openHostStores } from '../packages/cli/src/storage/index.js'
import type { HostStores } from '../packages/cli/src/storage/types.js'
import { fmtMs, summarize, timeIt } from './stats.js'

const ITERATIONS = { file: 300, keyring: 100 } as const

async function measure(backend: 'file' | 'keyring', rows: string[][]): Promise<void> {
  const home = await mkdtemp(join(tmpdir(), 'credproxy-bench-'))
  const env = {
    CREDPROXY_HOME: home,
    CREDPROXY_KEYRING: backend === 'file' ? 'off' : 'required',
    CREDPROXY_KEYRING_SERVICE: `credproxy-bench-${randomBytes(4).toString('hex')}`,
  }
  try {
    let stores: HostStores | undefined
    // Opening includes the keyring probe; the first save derives the file key (scrypt).
    const first = await timeIt(async () => {
      stores = await openHostStores({ env, log: () => {} })
      await stores.keys.saveKey('BENCH_FIRST', 'first')
    })
    if (stores === undefined) return
    const s = stores
    const n = ITERATIONS[backend]
    const samples: Record<string, number[]> = { saveToken: [], getToken: [], recordUsage: [], saveKey: [], getKey: [] }
    for (let i = 0; i < n; i++) {
      const token = { access_token: `access-${i}-${'x'.repeat(800)}`, refresh_token: `r-${i}`, expiry: 2e9, token_type: 'Bearer' }
      samples['saveToken']?.push(await timeIt(() => s.tokens.saveToken('bench', token)))
      samples['getToken']?.push(await timeIt(() => s.tokens.getToken('bench')))
      // What every get_token through the broker adds (counted in memory, written to usage.json in batches).
      samples['recordUsage']?.push(await timeIt(() => s.tokens.recordUsage('bench', 'default')))
      samples['saveKey']?.push(await timeIt(() => s.keys.saveKey('BENCH_KEY', `sk-${i}`)))
      samples['getKey']?.push(await timeIt(() => s.keys.getKey('BENCH_KEY')))
    }
    for (const [op, values] of Object.entries(samples)) {
      const stats = summarize(values)
      rows.push([backend, op, String(stats.n), fmtMs(stats.p50), fmtMs(stats.p99)])
    }
    rows.push([backend, 'open + first save', '1', fmtMs(first), fmtMs(first)])
    await s.tokens.close?.()
    await s.tokens.removeToken('bench')
    await s.keys.deleteKey('BENCH_KEY')
    await s.keys.deleteKey('BENCH_FIRST')
  } finally {
    await rm(home, { recursive: true, force: true })
  }
}

export async function run(): Promise<void> {
  const rows: string[][] = []
  await measure('file', rows)
  if (process.env['CREDPROXY_TEST_SECRET_SERVICE'] !== undefined) await measure('keyring', rows)
  else rows.push(['keyring', '(skipped: no Secret Service; run under scripts/with-secret-service.sh)', '', '', ''])
  const header = ['backend', 'operation', 'n', 'median', 'p99']
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`
  console.log(line(header))
  console.log(line(widths.map((w) => '-'.repeat(w))))
  for (const row of rows) console.log(line(row))
}
