// `credproxy run --egress`: what the bridge into a network-less bwrap costs.
// - added p50: the same keep-alive client inside `credproxy run --egress` without a
//   network (client -> forwarder -> Unix socket -> proxy -> upstream) and with
//   --allow-network (client -> the proxy's loopback TCP listener -> upstream: the host path);
// - the forwarder's RSS (socat, and our Node forwarder);
// - `credproxy run --egress X -- true` wall time beside `credproxy run -- true`.
// Spawns the built CLI: `npm run bench` builds first.
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { openHostStores } from '../packages/cli/src/storage/index.js'
import { resolvePaths } from '../packages/cli/src/paths.js'
import { startTestUpstream } from '../packages/cli/test/helpers/egress-test-upstream.js'
import { fmtMs, summarize, timeIt } from './stats.js'

const BIN = fileURLToPath(new URL('../packages/cli/bin/credproxy.js', import.meta.url))
const CLIENT = fileURLToPath(new URL('./egress-bridge-client.mjs', import.meta.url))
const REQUESTS = 3000
const ROUNDS = 3
const WALL_RUNS = 15

interface ClientResult {
  p50: number
  p90: number
  forwarderRssKiB: number | null
}

function exec(args: string[], env: NodeJS.ProcessEnv, cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()))
    child.once('error', reject)
    child.once('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`credproxy ${args.join(' ')} exited ${code}: ${err}`))))
  })
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN

export async function run(): Promise<void> {
  const home = mkdtempSync(join(tmpdir(), 'cp-bench-run-egress-'))
  const cwd = mkdtempSync(join(tmpdir(), 'cp-bench-run-egress-cwd-'))
  const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/root', CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' }
  const upstream = await startTestUpstream(home, (_req, res) => res.end('ok'))
  try {
    const stores = await openHostStores({ env, log: () => undefined })
    await stores.keys.saveKey('BENCH_KEY', 'bench-secret-value')
    await stores.tokens.close?.()
    const paths = resolvePaths(env)
    mkdirSync(paths.configDir, { recursive: true })
    writeFileSync(
      join(paths.configDir, 'egress.json'),
      JSON.stringify({
        rules: [{ name: 'bench', hosts: ['api.example.test'], credential: { key: 'BENCH_KEY' }, inject: { header: 'authorization', format: 'Bearer {}' }, upstream: `127.0.0.1:${upstream.port}`, ca: upstream.caFile }],
      }),
    )
    const client = (flags: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<ClientResult> =>
      exec(['run', '--sandbox', 'bwrap', ...flags, '--egress', 'bench', '--', process.execPath, CLIENT, 'https://api.example.test/', String(REQUESTS)], { ...env, ...extraEnv }, cwd).then(
        (out) => JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as ClientResult,
      )
    // Interleaved rounds: load drift on a shared machine hits every column alike.
    const host: number[] = []
    const bridged: number[] = []
    const bridgedNode: number[] = []
    let socatRss: number | null = null
    let nodeRss: number | null = null
    for (let round = 0; round < ROUNDS; round++) {
      host.push((await client(['--allow-network'])).p50)
      const viaSocat = await client([], { CREDPROXY_EGRESS_FORWARDER: 'socat' })
      bridged.push(viaSocat.p50)
      socatRss = viaSocat.forwarderRssKiB
      const viaNode = await client([], { CREDPROXY_EGRESS_FORWARDER: 'node' })
      bridgedNode.push(viaNode.p50)
      nodeRss = viaNode.forwarderRssKiB
    }
    const hostP50 = median(host)
    console.log(`Keep-alive GETs through the egress proxy, ${REQUESTS} per run, median of ${ROUNDS} interleaved runs:\n`)
    console.log('| path | p50 | added p50 vs host path | forwarder RSS |\n|---|---|---|---|')
    console.log(`| host path (--allow-network: client -> proxy TCP listener) | ${fmtMs(hostP50)} | - | - |`)
    console.log(`| bridge, socat (client -> forwarder -> Unix socket -> proxy) | ${fmtMs(median(bridged))} | ${fmtMs(median(bridged) - hostP50)} | ${socatRss === null ? '?' : `${(socatRss / 1024).toFixed(1)} MiB`} |`)
    console.log(`| bridge, Node forwarder | ${fmtMs(median(bridgedNode))} | ${fmtMs(median(bridgedNode) - hostP50)} | ${nodeRss === null ? '?' : `${(nodeRss / 1024).toFixed(1)} MiB`} |`)

    const wall = async (flags: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<number[]> => {
      const once = (): Promise<string> => exec(['run', '--sandbox', 'bwrap', ...flags, '--', 'true'], { ...env, ...extraEnv }, cwd)
      await once()
      const samples: number[] = []
      for (let i = 0; i < WALL_RUNS; i++) samples.push(await timeIt(once))
      return samples
    }
    const rows: Array<[string, number[]]> = [
      ['credproxy run --sandbox bwrap -- true', await wall([])],
      ['credproxy run --sandbox bwrap --egress bench -- true (socat)', await wall(['--egress', 'bench'], { CREDPROXY_EGRESS_FORWARDER: 'socat' })],
      ['credproxy run --sandbox bwrap --egress bench -- true (Node forwarder)', await wall(['--egress', 'bench'], { CREDPROXY_EGRESS_FORWARDER: 'node' })],
    ]
    console.log('\n| wall time | p50 | p99 | mean | n |\n|---|---|---|---|---|')
    for (const [name, samples] of rows) {
      const s = summarize(samples)
      console.log(`| ${name} | ${fmtMs(s.p50)} | ${fmtMs(s.p99)} | ${fmtMs(s.mean)} | ${s.n} |`)
    }
  } finally {
    await upstream.close()
    rmSync(home, { recursive: true, force: true })
    rmSync(cwd, { recursive: true, force: true })
  }
}
