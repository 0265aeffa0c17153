// Start-up of the `credproxy` command, as ratios to `node -e 0` measured in the same
// run (issue 12 targets): inside a bwrap sandbox, on the host with the file store and
// the keyring, and `credproxy run --sandbox bwrap -- true` with its peak RSS.
// Spawns the built CLI: `npm run bench` builds first.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import { fmtMs, summarize } from './stats.js'

const RUNS = 15
const BIN = fileURLToPath(new URL('../packages/cli/bin/credproxy.js', import.meta.url))
const INNER = fileURLToPath(new URL('./startup-inner.mjs', import.meta.url))
const KEY = 'BENCH_KEY'
const PROVIDER = 'bench'
const TIME = '/usr/bin/time'
/** Under the repo (a sandbox hides /tmp): the floor script below is written here. */
const FLOOR = fileURLToPath(new URL('../node_modules/.cache/credproxy-bench/floor-get-key.mjs', import.meta.url))

/**
 * The floor for an in-sandbox `credproxy key get`: the same socket round trip (connect,
 * v3 handshake with its HMACs, get_key) by the core client alone, bundled into one file,
 * with no CLI around it. What `key get` costs above this row is the CLI's own.
 */
async function buildFloor(): Promise<void> {
  await build({
    stdin: {
      contents: `import { createProviderKeyStorage } from '@credproxy/core/client'
const value = await createProviderKeyStorage({ env: process.env }).getKey(process.argv[2])
process.stdout.write(value ?? '')
process.exit(value === null ? 3 : 0)`,
      resolveDir: fileURLToPath(new URL('..', import.meta.url)),
      loader: 'js',
    },
    outfile: FLOOR,
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    logLevel: 'warning',
  })
}

interface Row {
  name: string
  samples: number[]
  /** The baseline row's name; the ratio is p50 / baseline p50. */
  vs?: string
  target?: number
  rssKiB?: number[]
}

function once(file: string, args: string[], env: NodeJS.ProcessEnv, input?: string): { ms: number; rssKiB?: number } {
  const timed = existsSync(TIME)
  const start = process.hrtime.bigint()
  const result = spawnSync(timed ? TIME : file, timed ? ['-f', '%M', file, ...args] : args, {
    env,
    input,
    stdio: ['pipe', 'ignore', 'pipe'],
  })
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  if (result.status !== 0) throw new Error(`${file} ${args.join(' ')} exited ${result.status}: ${result.stderr.toString().slice(-500)}`)
  const rss = timed ? Number(result.stderr.toString().trim().split('\n').at(-1)) : Number.NaN
  return Number.isFinite(rss) ? { ms, rssKiB: rss } : { ms }
}

/** Interleaved rounds over all commands, after one warm-up each. */
function sampleAll(commands: Array<{ name: string; file: string; args: string[]; env: NodeJS.ProcessEnv }>): Map<string, { ms: number[]; rss: number[] }> {
  const out = new Map<string, { ms: number[]; rss: number[] }>()
  for (const c of commands) {
    once(c.file, c.args, c.env)
    out.set(c.name, { ms: [], rss: [] })
  }
  for (let i = 0; i < RUNS; i++) {
    for (const c of commands) {
      const r = once(c.file, c.args, c.env)
      const entry = out.get(c.name)
      entry?.ms.push(r.ms)
      if (r.rssKiB !== undefined) entry?.rss.push(r.rssKiB)
    }
  }
  return out
}

function runCapture(args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk))
    child.once('error', reject)
    child.once('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`credproxy ${args.join(' ')} exited ${code}`))))
  })
}

function keyringAvailable(): boolean {
  return process.env['CREDPROXY_TEST_SECRET_SERVICE'] !== undefined
}

export async function run(): Promise<void> {
  const home = mkdtempSync(join(tmpdir(), 'cp-bench-startup-'))
  const base = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/root', CREDPROXY_HOME: home }
  const fileEnv = { ...base, CREDPROXY_KEYRING: 'off' }
  const node = process.execPath
  const rows: Row[] = []
  try {
    const token = JSON.stringify({ access_token: 'at-bench', token_type: 'Bearer', expiry: 4_000_000_000 })
    once(node, [BIN, 'key', 'set', KEY], fileEnv, 'sk-bench')
    once(node, [BIN, 'auth', 'import', PROVIDER], fileEnv, token)

    // Inside the sandbox: the inner script times each command next to its own `node -e 0`.
    await buildFloor()
    const inner = JSON.parse(
      await runCapture(['run', '--sandbox', 'bwrap', '--grant-key', KEY, '--grant', PROVIDER, '--', node, INNER, BIN, String(RUNS), KEY, PROVIDER, FLOOR], fileEnv),
    ) as Record<string, number[]>
    const innerBase = 'inside bwrap: node -e 0'
    for (const [name, samples] of Object.entries(inner)) {
      if (name === 'node -e 0') rows.push({ name: innerBase, samples })
      else if (name.startsWith('floor')) rows.push({ name: `inside bwrap: ${name}`, samples, vs: innerBase })
      else rows.push({ name: `inside bwrap: ${name}`, samples, vs: innerBase, target: 1.5 })
    }

    // On the host.
    const bare = ['--unshare-all', '--die-with-parent', '--new-session', '--ro-bind', '/', '/', '--tmpfs', '/tmp', '--proc', '/proc', '--dev', '/dev', '--', 'true']
    const host = [
      { name: 'node -e 0', file: node, args: ['-e', '0'], env: fileEnv },
      { name: 'bwrap ... true (bare)', file: 'bwrap', args: bare, env: fileEnv },
      { name: 'credproxy --version', file: node, args: [BIN, '--version'], env: fileEnv },
      { name: 'host, file store: credproxy key get', file: node, args: [BIN, 'key', 'get', KEY], env: fileEnv },
      { name: 'host, file store: credproxy token', file: node, args: [BIN, 'token', PROVIDER], env: fileEnv },
      { name: 'credproxy run --sandbox bwrap -- true', file: node, args: [BIN, 'run', '--sandbox', 'bwrap', '--', 'true'], env: fileEnv },
    ]
    const keyringEnv = { ...process.env, ...base, CREDPROXY_KEYRING: 'required', CREDPROXY_KEYRING_SERVICE: `credproxy-bench-${process.pid}` }
    if (keyringAvailable()) {
      once(node, [BIN, 'key', 'set', KEY], keyringEnv, 'sk-bench')
      // One Secret Service round trip from a fresh process: the floor for a keyring `key get`.
      const lookup = `const { Entry } = await import('@napi-rs/keyring'); new Entry(${JSON.stringify(keyringEnv.CREDPROXY_KEYRING_SERVICE)}, 'x').getPassword()`
      host.push(
        { name: 'node + one keyring lookup', file: node, args: ['--input-type=module', '-e', lookup], env: keyringEnv },
        { name: 'host, keyring: credproxy key get', file: node, args: [BIN, 'key', 'get', KEY], env: keyringEnv },
      )
    }
    const measured = sampleAll(host)
    const get = (name: string) => measured.get(name) ?? { ms: [], rss: [] }
    rows.push({ name: 'node -e 0', samples: get('node -e 0').ms })
    rows.push({ name: 'bwrap ... true (bare)', samples: get('bwrap ... true (bare)').ms })
    rows.push({ name: 'credproxy --version', samples: get('credproxy --version').ms, vs: 'node -e 0' })
    for (const name of ['host, file store: credproxy key get', 'host, file store: credproxy token']) {
      rows.push({ name, samples: get(name).ms, vs: 'node -e 0', target: 2, rssKiB: get(name).rss })
    }
    if (keyringAvailable()) {
      rows.push({ name: 'node + one keyring lookup', samples: get('node + one keyring lookup').ms })
      rows.push({ name: 'host, keyring: credproxy key get', samples: get('host, keyring: credproxy key get').ms, vs: 'node + one keyring lookup', rssKiB: get('host, keyring: credproxy key get').rss })
    }
    const nodeP50 = summarize(get('node -e 0').ms).p50
    const bwrapP50 = summarize(get('bwrap ... true (bare)').ms).p50
    const runName = 'credproxy run --sandbox bwrap -- true'
    rows.push({ name: runName, samples: get(runName).ms, rssKiB: get(runName).rss })

    console.log('| what | p50 | p99 | ratio | target | peak RSS p50 |\n|---|---|---|---|---|---|')
    for (const row of rows) {
      const s = summarize(row.samples)
      let ratio = ''
      let target = row.target === undefined ? '' : `<= ${row.target}x`
      if (row.vs !== undefined) {
        const basis = summarize(rows.find((r) => r.name === row.vs)?.samples ?? []).p50
        ratio = `${(s.p50 / basis).toFixed(2)}x ${row.vs}`
      }
      if (row.name === runName) {
        ratio = `${(s.p50 / (nodeP50 + bwrapP50)).toFixed(2)}x (node -e 0 + bare bwrap)`
        target = '<= 2.5x, <= 60 MiB'
      }
      const rss = row.rssKiB !== undefined && row.rssKiB.length > 0 ? `${(summarize(row.rssKiB).p50 / 1024).toFixed(1)} MiB` : ''
      console.log(`| ${row.name} | ${fmtMs(s.p50)} | ${fmtMs(s.p99)} | ${ratio} | ${target} | ${rss} |`)
    }
    if (keyringAvailable()) spawnSync(node, [BIN, 'key', 'delete', KEY], { env: keyringEnv, stdio: 'ignore' })
  } finally {
    rmSync(home, { recursive: true, force: true })
  }
}
