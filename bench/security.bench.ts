// Cost of the security boundary: a v3 (mutual HMAC proof) handshake beside a v2
// bearer-token one, and get_token with and without the peer check and the audit
// file. Real Unix sockets, real file stores (keyring off), in one process.
// Connection slots: legitimate v3 handshakes served per second, and their success
// rate, while another process holds N connections and reopens each one closed.
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { computeClientProof, encodeFrame, FrameDecoder, generateNonce, ProxySocketClient } from '@credproxy/core'
import { resolvePaths } from '../packages/cli/src/paths.js'
import { auditLogPath } from '../packages/cli/src/audit/audit-format.js'
import { AuditLog } from '../packages/cli/src/audit/audit-writer.js'
import { CredentialProxyServer } from '../packages/cli/src/broker/credential-proxy-server.js'
import { createPeerCheck } from '../packages/cli/src/broker/peer-credentials.js'
import { openHostStores } from '../packages/cli/src/storage/index.js'
import { fmtMs, summarize, timeIt } from './stats.js'

const HANDSHAKES = 300
const REQUESTS = 1_000
const LEGACY_TOKEN = 'b'.repeat(64)
const NO_RATE_LIMIT = { rateLimitPerSecond: 1_000_000, rateLimitBurst: 1_000_000 }

/** Connect, run one handshake, close. Returns once the server has accepted it. */
function handshake(socketPath: string, secret: Buffer, version: 2 | 3): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket: Socket = connect(socketPath)
    const decoder = new FrameDecoder()
    const clientNonce = generateNonce()
    socket.on('error', reject)
    socket.on('connect', () => {
      socket.write(
        encodeFrame(
          version === 3
            ? { v: 3, op: 'handshake', payload: { minVersion: 3, maxVersion: 3, clientNonce } }
            : { v: 2, op: 'handshake', payload: { minVersion: 1, maxVersion: 2, capabilityToken: LEGACY_TOKEN } },
        ),
      )
    })
    socket.on('data', (chunk: Buffer) => {
      for (const frame of decoder.push(chunk)) {
        if (frame['ok'] !== true) return reject(new Error(JSON.stringify(frame)))
        const data = frame['data'] as { serverNonce?: string }
        if (version === 3 && frame['op'] === 'handshake') {
          const clientProof = computeClientProof(secret, data.serverNonce ?? '', clientNonce)
          socket.write(encodeFrame({ v: 3, op: 'handshake_finish', payload: { clientProof } }))
        } else {
          socket.destroy()
          resolve()
        }
      }
    })
  })
}

/** How long legitimate handshakes are counted for each held-connection figure (ms). */
const SLOT_MEASURE_MS = 3_000
const HELD_COUNTS = [0, 64, 1_000]

// The attacker, in its own process: holds N connections (pending: never a handshake byte;
// authenticated: handshake done, then idle) and reopens each one as soon as it is closed.
const HOLDER = `
import { connect } from 'node:net'
import { createHmac, randomBytes } from 'node:crypto'
const [socketPath, countText, kind, secretHex] = process.argv.slice(1)
const frame = (m) => { const b = Buffer.from(JSON.stringify(m)); const h = Buffer.alloc(4); h.writeUInt32BE(b.length); return Buffer.concat([h, b]) }
let open = 0, announced = false
function hold() {
  const socket = connect(socketPath)
  socket.on('error', () => undefined)
  socket.on('connect', () => {
    open++
    if (!announced && open >= Number(countText)) { announced = true; process.stdout.write('held\\n') }
    if (kind !== 'authenticated') return
    const nonce = randomBytes(32).toString('hex')
    let buffered = Buffer.alloc(0)
    socket.on('data', (chunk) => {
      buffered = Buffer.concat([buffered, chunk])
      if (buffered.length < 4 || buffered.length < 4 + buffered.readUInt32BE(0)) return
      const hello = JSON.parse(buffered.subarray(4, 4 + buffered.readUInt32BE(0)).toString())
      buffered = buffered.subarray(4 + buffered.readUInt32BE(0))
      if (hello.op !== 'handshake' || !hello.ok) return
      const proof = createHmac('sha256', Buffer.from(secretHex, 'hex')).update('credproxy/v3/client|' + hello.data.serverNonce + '|' + nonce).digest('hex')
      socket.write(frame({ v: 3, op: 'handshake_finish', payload: { clientProof: proof } }))
    })
    socket.write(frame({ v: 3, op: 'handshake', payload: { minVersion: 3, maxVersion: 3, clientNonce: nonce } }))
  })
  socket.on('close', () => { open--; setImmediate(hold) })
}
for (let i = 0; i < Number(countText); i++) hold()
`

/** One connect + v3 handshake + close; true when the server admitted it. */
async function tryHandshake(socketPath: string, secret: Buffer): Promise<boolean> {
  try {
    await handshake(socketPath, secret, 3)
    return true
  } catch {
    return false
  }
}

async function slotFigures(socketPath: string, secret: Buffer, held: number, kind: 'pending' | 'authenticated'): Promise<string[]> {
  const holder =
    held === 0 ? undefined : spawn(process.execPath, ['--input-type=module', '-e', HOLDER, socketPath, String(held), kind, secret.toString('hex')], { stdio: ['ignore', 'pipe', 'inherit'] })
  try {
    if (holder !== undefined) {
      await new Promise<void>((resolve, reject) => {
        holder.stdout?.once('data', () => resolve())
        holder.once('exit', (code) => reject(new Error(`holder exited with ${String(code)}`)))
      })
    }
    let ok = 0
    let failed = 0
    const started = performance.now()
    while (performance.now() - started < SLOT_MEASURE_MS) {
      if (await tryHandshake(socketPath, secret)) ok++
      else failed++
    }
    const seconds = (performance.now() - started) / 1000
    const rate = ok + failed === 0 ? 0 : (100 * ok) / (ok + failed)
    return [`${held} ${kind}`, (ok / seconds).toFixed(0), `${rate.toFixed(1)}%`, String(ok + failed)]
  } finally {
    holder?.kill()
  }
}

async function connectionSlots(paths: ReturnType<typeof resolvePaths>, stores: Awaited<ReturnType<typeof openHostStores>>): Promise<void> {
  const audit = await AuditLog.open(auditLogPath(paths))
  const server = new CredentialProxyServer({ stores, runtimeDir: paths.runtimeDir, peerCheck: createPeerCheck(), audit })
  const { socketPath, secret } = await server.start()
  const rows: string[][] = []
  try {
    for (const held of HELD_COUNTS) rows.push(await slotFigures(socketPath, secret, held, 'pending'))
    rows.push(await slotFigures(socketPath, secret, 64, 'authenticated'))
  } finally {
    await server.stop()
    await audit.close()
  }
  console.log(`\nconnection slots: legitimate v3 handshakes (connect + handshake + close, one at a time, ${SLOT_MEASURE_MS} ms each)`)
  console.log('while another process holds N connections and reopens each one closed (default limits, peer check + audit)')
  printTable(['held connections', 'served/s', 'success', 'attempts'], rows)
}

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ')
  console.log(line(header))
  console.log(line(widths.map((w) => '-'.repeat(w))))
  for (const row of rows) console.log(line(row))
}

export async function run(): Promise<void> {
  const home = await mkdtemp(join(tmpdir(), 'credproxy-bench-sec-'))
  const env = { CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' }
  const paths = resolvePaths(env)
  const stores = await openHostStores({ env, paths, log: () => undefined })
  await stores.tokens.saveToken('anthropic', { access_token: 'at', expiry: 4_000_000_000, token_type: 'Bearer' })
  const audit = await AuditLog.open(auditLogPath(paths))
  const grants = { providers: [{ provider: 'anthropic' }], keys: [], capabilities: ['read' as const] }
  const rows: string[][] = []
  try {
    for (const guarded of [false, true]) {
      const server = new CredentialProxyServer({
        stores,
        runtimeDir: paths.runtimeDir,
        grants,
        allowLegacyClients: true,
        legacyToken: LEGACY_TOKEN,
        limits: { ...NO_RATE_LIMIT, maxConnectionsPerSession: 1_000 },
        ...(guarded ? { peerCheck: createPeerCheck(), audit } : {}),
      })
      const { socketPath, secret } = await server.start()
      const label = guarded ? 'peer check + audit' : 'no peer check, no audit'
      for (const version of [2, 3] as const) {
        const samples: number[] = []
        for (let i = 0; i < HANDSHAKES; i++) samples.push(await timeIt(() => handshake(socketPath, secret, version)))
        const s = summarize(samples)
        rows.push([`v${version} connect + handshake`, label, String(s.n), fmtMs(s.p50), fmtMs(s.p99)])
      }
      const client = new ProxySocketClient({ socketPath, secret })
      await client.request('get_token', { provider: 'anthropic' })
      const samples: number[] = []
      for (let i = 0; i < REQUESTS; i++) samples.push(await timeIt(() => client.request('get_token', { provider: 'anthropic' })))
      const s = summarize(samples)
      rows.push(['get_token (v3, open connection)', label, String(s.n), fmtMs(s.p50), fmtMs(s.p99)])
      client.close()
      await server.stop()
    }
    printTable(['operation', 'server', 'n', 'p50', 'p99'], rows)
    await connectionSlots(paths, stores)
  } finally {
    await audit.close()
    await rm(home, { recursive: true, force: true })
  }
}
