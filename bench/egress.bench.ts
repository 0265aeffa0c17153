// The egress proxy beside direct HTTPS and mitmdump, in one run, on the same upstream and the same client:
// requests/s at 1 and 16 keep-alive connections and added p50 on the interception (CONNECT) path and the
// reverse route; leaf certificate time for a new host; proxy RSS with 1,000 idle intercepted tunnels.
// Upstream, proxy and mitmdump each run in their own process; the load generator is a minimal keep-alive
// HTTP/1.1 client over raw sockets (one request in flight per connection), so its own cost is small and the
// same for every column. Targets (issue 11): 16-conn req/s >= 5x mitmdump on both paths, added p50 at
// 1 conn <= 0.5 ms, leaf <= 10 ms, 1,000 idle tunnels <= 64 MiB.
// Each cell is measured in EGRESS_BENCH_ROUNDS rounds (default 3) of EGRESS_BENCH_SECONDS (default 2) s, the columns
// taking turns, and the median round is reported: drift on a shared machine hits every column alike.
// EGRESS_BENCH_PROFILE=DIR writes CPU profiles of the children.
import { fork, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { connect as netConnect, createServer, type AddressInfo, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Duplex } from 'node:stream'
import { connect as tlsConnect } from 'node:tls'
import { fileURLToPath } from 'node:url'
import { SessionCa } from '../packages/cli/src/egress/ca.js'
import { makeTestPki, type TestPki } from '../packages/cli/test/helpers/egress-upstreams.js'
import { fmtMs, summarize } from './stats.js'

const SECONDS = Number(process.env['EGRESS_BENCH_SECONDS'] ?? 2)
const ROUNDS = Number(process.env['EGRESS_BENCH_ROUNDS'] ?? 3)
const WARMUP_MS = 1_000
const CONNECTIONS = [1, 16] as const
const IDLE_TUNNELS = 1_000
const NEW_HOSTS = 40
const MIB = 1024 * 1024
const TARGET = { ratioVsMitm: 5, addedP50Ms: 0.5, leafMs: 10, idleTunnelsMiB: 64 }

interface ForkedChild {
  info: Record<string, unknown>
  rss(): Promise<number>
  close(): void
}

async function forkChild(args: string[], env: Record<string, string>): Promise<ForkedChild> {
  // EGRESS_BENCH_PROFILE=DIR writes a CPU profile of each child there (open it in Chrome DevTools).
  const profile = process.env['EGRESS_BENCH_PROFILE']
  const child = fork(fileURLToPath(new URL('./egress-child.ts', import.meta.url)), args, {
    execArgv: ['--import', 'tsx', '--expose-gc', ...(profile === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profile}`])],
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const info = await new Promise<Record<string, unknown>>((resolve, reject) => {
    child.once('message', (message) => resolve(message as Record<string, unknown>))
    child.once('exit', (code) => reject(new Error(`bench child ${args[0] ?? ''} exited ${String(code)}`)))
  })
  return {
    info,
    rss: () =>
      new Promise((resolve) => {
        child.once('message', (message) => resolve((message as { rss: number }).rss))
        child.send('rss')
      }),
    close: () => {
      if (child.connected) child.disconnect()
    },
  }
}

/**
 * One keep-alive HTTP/1.1 connection: writes a request, resolves when the whole response (content-length or
 * chunked) has arrived. A non-2xx answer rejects, so a misconfigured column fails loudly instead of measuring
 * refusals.
 */
class KeepAliveConnection {
  #buf: Buffer = Buffer.alloc(0)
  #pending: { resolve: () => void; reject: (error: Error) => void } | null = null
  #head: { chunked: boolean; length: number } | null = null

  constructor(readonly socket: Duplex) {
    socket.on('data', (chunk: Buffer) => {
      this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk])
      this.#drain()
    })
    socket.on('error', (error: Error) => this.#pending?.reject(error))
    socket.on('close', () => this.#pending?.reject(new Error('connection closed')))
  }

  request(bytes: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#pending = { resolve, reject }
      this.socket.write(bytes)
    })
  }

  #drain(): void {
    if (this.#pending === null) return
    if (this.#head === null) {
      const end = this.#buf.indexOf('\r\n\r\n')
      if (end === -1) return
      const head = this.#buf.subarray(0, end).toString('latin1')
      const status = Number(head.slice(9, 12))
      if (status < 200 || status > 299) {
        this.#pending.reject(new Error(`answered ${head.split('\r\n')[0] ?? ''}`))
        return
      }
      const chunked = /\r\ntransfer-encoding:[ \t]*chunked/i.test(head)
      const length = Number(/\r\ncontent-length:[ \t]*(\d+)/i.exec(head)?.[1] ?? 0)
      this.#head = { chunked, length }
      this.#buf = this.#buf.subarray(end + 4)
    }
    if (this.#head.chunked) {
      for (;;) {
        const eol = this.#buf.indexOf('\r\n')
        if (eol === -1) return
        const size = Number.parseInt(this.#buf.subarray(0, eol).toString('latin1'), 16)
        const total = eol + 2 + size + 2
        if (this.#buf.length < total) return
        this.#buf = this.#buf.subarray(total)
        if (size === 0) break
      }
    } else {
      if (this.#buf.length < this.#head.length) return
      this.#buf = this.#buf.subarray(this.#head.length)
    }
    this.#head = null
    const pending = this.#pending
    this.#pending = null
    pending.resolve()
  }
}

function once<T extends Duplex>(socket: T, event: string): Promise<T> {
  return new Promise((resolve, reject) => {
    socket.once(event, () => resolve(socket))
    socket.once('error', reject)
  })
}

/** A raw CONNECT through an HTTP proxy, then TLS to `servername` trusting `ca`. */
async function tunnel(proxyPort: number, target: string, servername: string, ca: string, proxyAuth: string | null): Promise<Duplex> {
  const raw = await once(netConnect({ host: '127.0.0.1', port: proxyPort }), 'connect')
  const auth = proxyAuth === null ? '' : `proxy-authorization: Basic ${Buffer.from(`credproxy:${proxyAuth}`).toString('base64')}\r\n`
  raw.write(`CONNECT ${target} HTTP/1.1\r\nhost: ${target}\r\n${auth}\r\n`)
  await new Promise<void>((resolve, reject) => {
    let head = ''
    const onData = (chunk: Buffer): void => {
      head += chunk.toString('latin1')
      if (!head.includes('\r\n\r\n')) return
      raw.off('data', onData)
      if (/^HTTP\/1\.[01] 200/.test(head)) resolve()
      else reject(new Error(`CONNECT ${target}: ${head.split('\r\n')[0] ?? ''}`))
    }
    raw.on('data', onData)
    raw.once('error', reject)
  })
  return once(tlsConnect({ socket: raw, servername, ca }), 'secureConnect')
}

interface Cell {
  rps: number
  p50: number
  p99: number
}

async function measure(open: () => Promise<Duplex>, request: Buffer, connections: number): Promise<Cell> {
  const conns = await Promise.all(Array.from({ length: connections }, async () => new KeepAliveConnection(await open())))
  const runFor = async (ms: number, latencies: number[] | null): Promise<{ count: number; elapsed: number }> => {
    const start = performance.now()
    const deadline = start + ms
    let count = 0
    await Promise.all(
      conns.map(async (conn) => {
        while (performance.now() < deadline) {
          const t0 = performance.now()
          await conn.request(request)
          latencies?.push(performance.now() - t0)
          count += 1
        }
      }),
    )
    return { count, elapsed: performance.now() - start }
  }
  try {
    await runFor(WARMUP_MS, null)
    const latencies: number[] = []
    const { count, elapsed } = await runFor(SECONDS * 1000, latencies)
    const s = summarize(latencies)
    return { rps: (count / elapsed) * 1000, p50: s.p50, p99: s.p99 }
  } finally {
    for (const conn of conns) conn.socket.destroy()
  }
}

function httpRequestBytes(path: string, host: string, authorization: string): Buffer {
  return Buffer.from(`GET ${path} HTTP/1.1\r\nhost: ${host}\r\nauthorization: ${authorization}\r\naccept: application/json\r\n\r\n`)
}

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

async function waitForPort(port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}`)
    const ok = await new Promise<boolean>((resolve) => {
      const socket: Socket = netConnect({ host: '127.0.0.1', port })
      socket.once('connect', () => {
        socket.destroy()
        resolve(true)
      })
      socket.once('error', () => resolve(false))
    })
    if (ok) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`port ${port} not listening after ${timeoutMs} ms`)
}

async function exec(cmd: string, args: string[]): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: 'ignore' })
    child.on('error', () => resolve(null))
    child.on('close', resolve)
  })
}

/** mitmdump's path, installing the Debian package when root and missing; null (column skipped) otherwise. */
async function ensureMitmdump(): Promise<string | null> {
  if ((await exec('mitmdump', ['--version'])) === 0) return 'mitmdump'
  if (process.getuid?.() !== 0) {
    console.log('mitmdump is missing and this is not root: the mitmdump columns are skipped (apt-get install mitmproxy)')
    return null
  }
  console.log('mitmdump is missing: installing the Debian package mitmproxy ...')
  await exec('apt-get', ['update', '-qq'])
  await exec('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'mitmproxy'])
  if ((await exec('mitmdump', ['--version'])) === 0) return 'mitmdump'
  console.log('installing mitmproxy failed: the mitmdump columns are skipped')
  return null
}

// mitmdump's side of the comparison: swap the placeholder for the secret in the Authorization header.
const MITM_ADDON = `import os
SECRET = os.environ["BENCH_SECRET"]
PLACEHOLDER = os.environ["BENCH_PLACEHOLDER"]

def request(flow):
    if flow.request.headers.get("authorization") == "Bearer " + PLACEHOLDER:
        flow.request.headers["authorization"] = "Bearer " + SECRET
`

interface Mitm {
  port: number
  caPem: string
  child: ChildProcess
}

async function startMitmdump(bin: string, dir: string, mode: string | null, upstreamCaFile: string, env: Record<string, string>): Promise<Mitm> {
  const port = await freePort()
  const args = ['-q', '--listen-host', '127.0.0.1', '-p', String(port), '-s', join(dir, 'inject.py')]
  for (const option of [`confdir=${dir}`, 'stream_large_bodies=1', `ssl_verify_upstream_trusted_ca=${upstreamCaFile}`, 'connection_strategy=lazy', 'termlog_verbosity=error']) {
    args.push('--set', option)
  }
  if (mode !== null) args.push('--mode', mode)
  const child = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] })
  await waitForPort(port, child, 30_000)
  return { port, caPem: await readFile(join(dir, 'mitmproxy-ca-cert.pem'), 'utf8'), child }
}

const mib = (bytes: number): string => `${(bytes / MIB).toFixed(1)} MiB`
const rate = (n: number | undefined): string => (n === undefined ? '-' : n.toFixed(0))
const verdict = (ok: boolean): string => (ok ? 'met' : 'MISSED')

export async function run(): Promise<void> {
  const pki: TestPki = await makeTestPki()
  const work = await mkdtemp(join(tmpdir(), 'egress-bench-'))
  const secret = `real-${randomBytes(16).toString('hex')}`
  const children: ForkedChild[] = []
  const mitms: Mitm[] = []
  try {
    const upstream = await forkChild(['upstream', pki.dir], {})
    children.push(upstream)
    const upstreamPort = upstream.info['port'] as number
    const proxy = await forkChild(['proxy', pki.dir, String(upstreamPort)], { BENCH_SECRET: secret })
    children.push(proxy)
    const proxyPort = proxy.info['port'] as number
    const sessionCa = proxy.info['caCertPem'] as string
    const placeholder = proxy.info['placeholder'] as string
    const proxyToken = proxy.info['proxyToken'] as string

    // Leaf certificates: the CA's own cost for a new name, then a whole new-host handshake through the proxy.
    const ca = await SessionCa.create('bench')
    await ca.leafFor('warm.leaf.egress.test')
    const leafTimes: number[] = []
    for (let i = 0; i < NEW_HOSTS; i++) {
      const t0 = performance.now()
      await ca.leafFor(`n${i}.leaf.egress.test`)
      leafTimes.push(performance.now() - t0)
    }
    const handshake = async (host: string): Promise<number> => {
      const t0 = performance.now()
      const socket = await tunnel(proxyPort, `${host}:443`, host, sessionCa, proxyToken)
      const ms = performance.now() - t0
      socket.destroy()
      return ms
    }
    await handshake('api.egress.test')
    const newHost: number[] = []
    const knownHost: number[] = []
    for (let i = 0; i < NEW_HOSTS; i++) {
      newHost.push(await handshake(`h${i}.leaf.egress.test`))
      knownHost.push(await handshake('api.egress.test'))
    }

    const mitmBin = await ensureMitmdump()
    if (mitmBin !== null) {
      await writeFile(join(work, 'inject.py'), MITM_ADDON)
      const env = { BENCH_SECRET: secret, BENCH_PLACEHOLDER: placeholder }
      mitms.push(await startMitmdump(mitmBin, work, null, pki.caFile, env))
      mitms.push(await startMitmdump(mitmBin, work, `reverse:https://127.0.0.1:${upstreamPort}`, pki.caFile, env))
    }
    const [mitmRegular, mitmReverse] = mitms

    const columns: Array<{ name: string; open: () => Promise<Duplex>; request: Buffer }> = [
      {
        name: 'direct HTTPS',
        open: () => once(tlsConnect({ host: '127.0.0.1', port: upstreamPort, servername: 'api.egress.test', ca: pki.caPem }), 'secureConnect'),
        request: httpRequestBytes('/bench', 'api.egress.test', `Bearer ${secret}`),
      },
      {
        name: 'credproxy CONNECT + interception',
        open: () => tunnel(proxyPort, 'api.egress.test:443', 'api.egress.test', sessionCa, proxyToken),
        request: httpRequestBytes('/bench', 'api.egress.test', `Bearer ${placeholder}`),
      },
      {
        name: 'credproxy reverse route',
        open: () => once(netConnect({ host: '127.0.0.1', port: proxyPort }), 'connect'),
        request: httpRequestBytes('/api/bench', `127.0.0.1:${proxyPort}`, `Bearer ${placeholder}`),
      },
    ]
    if (mitmRegular !== undefined && mitmReverse !== undefined) {
      columns.push(
        {
          name: 'mitmdump CONNECT + interception',
          open: () => tunnel(mitmRegular.port, `127.0.0.1:${upstreamPort}`, 'api.egress.test', mitmRegular.caPem, null),
          request: httpRequestBytes('/bench', 'api.egress.test', `Bearer ${placeholder}`),
        },
        {
          name: 'mitmdump reverse',
          open: () => once(netConnect({ host: '127.0.0.1', port: mitmReverse.port }), 'connect'),
          request: httpRequestBytes('/bench', `127.0.0.1:${mitmReverse.port}`, `Bearer ${placeholder}`),
        },
      )
    }
    const rounds = new Map<string, Cell[]>()
    for (let round = 0; round < ROUNDS; round++) {
      for (const connections of CONNECTIONS) {
        for (const column of columns) {
          const key = `${column.name}|${connections}`
          rounds.set(key, [...(rounds.get(key) ?? []), await measure(column.open, column.request, connections)])
        }
      }
    }
    const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN
    const results = new Map<string, Map<number, Cell>>()
    for (const column of columns) {
      const row = new Map<number, Cell>()
      for (const connections of CONNECTIONS) {
        const cells = rounds.get(`${column.name}|${connections}`) ?? []
        row.set(connections, { rps: median(cells.map((c) => c.rps)), p50: median(cells.map((c) => c.p50)), p99: median(cells.map((c) => c.p99)) })
      }
      results.set(column.name, row)
    }

    // 1,000 idle intercepted tunnels (CONNECT done, TLS handshake done, no request), in a fresh proxy process:
    // the one above carries the heap the load runs grew.
    const idleProxy = await forkChild(['proxy', pki.dir, String(upstreamPort)], { BENCH_SECRET: secret })
    children.push(idleProxy)
    const idlePort = idleProxy.info['port'] as number
    const idleCa = idleProxy.info['caCertPem'] as string
    const idleToken = idleProxy.info['proxyToken'] as string
    const openIdle = (): Promise<Duplex> => tunnel(idlePort, 'api.egress.test:443', 'api.egress.test', idleCa, idleToken)
    for (const socket of await Promise.all(Array.from({ length: 20 }, openIdle))) socket.destroy()
    await new Promise((resolve) => setTimeout(resolve, 500))
    const rssBefore = await idleProxy.rss()
    const idle: Duplex[] = []
    for (let i = 0; i < IDLE_TUNNELS; i += 50) idle.push(...(await Promise.all(Array.from({ length: 50 }, openIdle))))
    const rssIdle = await idleProxy.rss()
    for (const socket of idle) socket.destroy()
    idleProxy.close()

    const direct = results.get('direct HTTPS')
    const cellOf = (name: string, n: number): Cell | undefined => results.get(name)?.get(n)
    console.log(
      `requests/s over keep-alive HTTP/1.1, median of ${ROUNDS} rounds of ${SECONDS} s per cell (one request in flight per connection; same upstream and client)`,
    )
    console.log('| path | 1 conn req/s | p50 | added p50 vs direct | p99 | 16 conns req/s | 16 conns vs mitmdump |')
    console.log('|---|---|---|---|---|---|---|')
    const mitmFor: Record<string, string> = {
      'credproxy CONNECT + interception': 'mitmdump CONNECT + interception',
      'credproxy reverse route': 'mitmdump reverse',
    }
    for (const [name, row] of results) {
      const one = row.get(1)
      const sixteen = row.get(16)
      const added = one !== undefined && direct?.get(1) !== undefined ? one.p50 - (direct.get(1)?.p50 ?? 0) : undefined
      const mitmName = mitmFor[name]
      const mitm16 = mitmName === undefined ? undefined : cellOf(mitmName, 16)
      const ratio = mitm16 !== undefined && sixteen !== undefined ? `${(sixteen.rps / mitm16.rps).toFixed(1)}x` : '-'
      console.log(
        `| ${name} | ${rate(one?.rps)} | ${one === undefined ? '-' : fmtMs(one.p50)} | ${name === 'direct HTTPS' || added === undefined ? '-' : `+${fmtMs(added)}`} | ${one === undefined ? '-' : fmtMs(one.p99)} | ${rate(sixteen?.rps)} | ${ratio} |`,
      )
    }
    const leaf = summarize(leafTimes)
    const fresh = summarize(newHost)
    const known = summarize(knownHost)
    console.log(`\nleaf certificate for a new host (${NEW_HOSTS} names)`)
    console.log('| measure | p50 | p99 |')
    console.log('|---|---|---|')
    console.log(`| SessionCa.leafFor, new name | ${fmtMs(leaf.p50)} | ${fmtMs(leaf.p99)} |`)
    console.log(`| CONNECT + TLS handshake through the proxy, new host | ${fmtMs(fresh.p50)} | ${fmtMs(fresh.p99)} |`)
    console.log(`| CONNECT + TLS handshake through the proxy, cached host | ${fmtMs(known.p50)} | ${fmtMs(known.p99)} |`)
    console.log(`\n${IDLE_TUNNELS} idle intercepted tunnels (a fresh proxy process, warmed with 20 tunnels; gc forced before each reading)`)
    console.log('| proxy RSS before | with the tunnels | growth | per tunnel |')
    console.log('|---|---|---|---|')
    console.log(`| ${mib(rssBefore)} | ${mib(rssIdle)} | ${mib(rssIdle - rssBefore)} | ${((rssIdle - rssBefore) / IDLE_TUNNELS / 1024).toFixed(1)} KiB |`)

    const added = (name: string): number => (cellOf(name, 1)?.p50 ?? Infinity) - (direct?.get(1)?.p50 ?? 0)
    const vsMitm = (name: string): number | undefined => {
      const mitmName = mitmFor[name]
      const ours = cellOf(name, 16)
      const theirs = mitmName === undefined ? undefined : cellOf(mitmName, 16)
      return ours === undefined || theirs === undefined ? undefined : ours.rps / theirs.rps
    }
    console.log('\ntargets')
    for (const name of ['credproxy CONNECT + interception', 'credproxy reverse route']) {
      const ratio = vsMitm(name)
      console.log(
        `- ${name}: 16-conn req/s ${ratio === undefined ? 'vs mitmdump not measured' : `${ratio.toFixed(1)}x mitmdump (target >= ${TARGET.ratioVsMitm}x): ${verdict(ratio >= TARGET.ratioVsMitm)}`}; added p50 ${fmtMs(added(name))} (target <= ${TARGET.addedP50Ms} ms): ${verdict(added(name) <= TARGET.addedP50Ms)}`,
      )
    }
    console.log(`- leaf for a new host ${fmtMs(leaf.p50)} (target <= ${TARGET.leafMs} ms): ${verdict(leaf.p50 <= TARGET.leafMs)}`)
    console.log(
      `- ${IDLE_TUNNELS} idle tunnels: RSS growth ${mib(rssIdle - rssBefore)} (target <= ${TARGET.idleTunnelsMiB} MiB): ${verdict(rssIdle - rssBefore <= TARGET.idleTunnelsMiB * MIB)}`,
    )
  } finally {
    for (const mitm of mitms) mitm.child.kill('SIGTERM')
    for (const child of children) child.close()
    await rm(work, { recursive: true, force: true })
    await pki.cleanup()
  }
}
