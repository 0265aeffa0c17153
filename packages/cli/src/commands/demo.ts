// `credproxy demo`: on a fresh machine, show the whole idea in one command. Store
// throwaway credentials in the default store, run a bubblewrap sandbox that
// fetches one granted key and one token through the socket, and check that
// nothing else secret (ungranted key, refresh token, session secret) is anywhere
// the sandbox can read. The throwaway credentials are removed on every path.
import { randomBytes } from 'node:crypto'
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer as createHttpsServer } from 'node:https'
import { connect, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { createProviderKeyStorage, createTokenStore, DEFAULT_BUCKET, isProxyMode } from '@credproxy/core'
import * as z from 'zod'
import { statusMark, useColor, writeLine, type CliIO, type Command } from '../cli-io.js'
import { EXIT } from '../exit-codes.js'
import { resolvePaths } from '../paths.js'
import { probeBwrap } from '../sandbox/bwrap.js'
import { SANDBOX_SECRET_FILE } from '../sandbox/types.js'
import { openHostStores } from '../storage/index.js'
import { canInstallDebianPackages, findOnPath, installCommand, installDebianPackages } from '../system-deps.js'
import { runCommand, type StartedSession } from './run.js'
import { EgressRuleSchema } from '../egress/index.js'
import { logLineTo } from '../escape.js'
import { CredproxyError, UsageError } from '../errors.js'
import { parseOptions } from './parse-options.js'

/** A file larger than this is not read by the probe (secrets are small; binaries are not ours). */
export const MAX_PROBE_FILE_BYTES = 1024 * 1024
/** Total bytes of file content the probe sends back. */
export const MAX_PROBE_TOTAL_BYTES = 32 * 1024 * 1024
export const MAX_PROBE_FILES = 5_000
/** TEST-NET-1 (RFC 5737): never routed, so a connect sends nothing anywhere. */
export const PROBE_ADDRESS = '192.0.2.1'
export const PROBE_PORT = 9
/** A connect that neither fails nor succeeds by then counts as "no network". */
export const PROBE_CONNECT_TIMEOUT_MS = 2_000
export const DEMO_PROVIDER = 'credproxy-demo'
/** The egress part: a throwaway local HTTPS upstream under this name, reached only through the proxy. */
export const DEMO_EGRESS_HOST = 'api.credproxy-demo.test'
/** A host with no rule: the proxy refuses it. */
export const DEMO_EGRESS_OTHER_HOST = 'other.credproxy-demo.test'
export const DEMO_EGRESS_RULE = 'credproxy-demo'
export const DEMO_EGRESS_ENV = 'DEMO_EGRESS_TOKEN'
/** What the demo installs on a fresh Debian/Ubuntu machine (as scripts/install-system-deps.sh does). */
export const DEMO_PACKAGES = ['bubblewrap'] as const

const help = `Usage: credproxy demo [--json]

Show what credproxy does, on this machine, in a few seconds:
  1. store a throwaway API key, a second (ungranted) key and a throwaway OAuth
     token with a refresh token in your default store (keyring or encrypted files)
  2. run a bubblewrap sandbox granted only the first key and the token, and
     egress to a throwaway local HTTPS upstream (a placeholder inside, the
     real third key injected on the host)
  3. inside: fetch both through the socket, then read every file, process
     command line and environment the sandbox can see, and try the network
  4. on the host: check that the key arrived, and that the ungranted key, the
     refresh token and the session secret (besides its hand-off file) appear
     nowhere in what was read
  5. delete the throwaway credentials

Without bubblewrap, the demo installs it when run as root on Debian/Ubuntu
(apt-get update && apt-get install -y --no-install-recommends bubblewrap, shown
as it runs); otherwise it prints the one command to run.

Exits 0 when every check passes, 1 when one fails, 6 when bubblewrap is missing.

Options:
  --json   print the checks as JSON

Examples:
  npx credproxy demo          # right after installing
  credproxy demo --json`

interface Check {
  ok: boolean
  label: string
}

// What the probe (inside) reports. File contents are base64 so any byte survives.
const ProbeReportSchema = z.object({
  fetched: z.object({ ok: z.boolean(), value: z.string().nullable(), code: z.string().nullable() }),
  decoy: z.object({ ok: z.boolean(), value: z.string().nullable(), code: z.string().nullable() }),
  token: z.object({ ok: z.boolean(), value: z.string().nullable(), code: z.string().nullable(), hasRefresh: z.boolean() }),
  env: z.record(z.string(), z.string()),
  processes: z.array(z.object({ pid: z.number(), cmdline: z.string(), environ: z.string() })),
  files: z.array(z.object({ path: z.string(), data: z.string() })),
  skipped: z.number(),
  interfaces: z.array(z.string()),
  connect: z.string(),
  visibleHidden: z.array(z.string()),
  egress: z.object({ placeholder: z.string(), status: z.number(), body: z.string(), other: z.string() }).optional(),
})
type ProbeReport = z.infer<typeof ProbeReportSchema>

async function attempt(fn: () => Promise<string | null>): Promise<{ ok: boolean; value: string | null; code: string | null }> {
  try {
    return { ok: true, value: await fn(), code: null }
  } catch (error) {
    const code = (error as { code?: unknown }).code
    return { ok: false, value: null, code: typeof code === 'string' ? code : 'ERROR' }
  }
}

function readSmall(path: string): Buffer | null {
  try {
    return readFileSync(path)
  } catch {
    return null
  }
}

/** Regular files under roots, depth first, bounded; symlinks are not followed. */
function collectFiles(roots: readonly string[]): { files: Array<{ path: string; data: string }>; skipped: number } {
  const files: Array<{ path: string; data: string }> = []
  const seen = new Set<string>()
  let total = 0
  let skipped = 0
  const stack = [...roots]
  while (stack.length > 0) {
    const path = stack.pop() as string
    if (seen.has(path)) continue
    seen.add(path)
    let info
    try {
      info = lstatSync(path)
    } catch {
      continue
    }
    if (info.isDirectory()) {
      let entries: string[] = []
      try {
        entries = readdirSync(path)
      } catch {
        skipped++
      }
      for (const entry of entries) stack.push(join(path, entry))
    } else if (info.isFile()) {
      if (info.size > MAX_PROBE_FILE_BYTES || total + info.size > MAX_PROBE_TOTAL_BYTES || files.length >= MAX_PROBE_FILES) {
        skipped++
        continue
      }
      const data = readSmall(path)
      if (data === null) {
        skipped++
        continue
      }
      total += data.length
      files.push({ path, data: data.toString('base64') })
    }
  }
  return { files, skipped }
}

function processes(): ProbeReport['processes'] {
  const out: ProbeReport['processes'] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const cmdline = readSmall(`/proc/${entry}/cmdline`)
    const environ = readSmall(`/proc/${entry}/environ`)
    out.push({ pid: Number(entry), cmdline: (cmdline ?? Buffer.alloc(0)).toString('base64'), environ: (environ ?? Buffer.alloc(0)).toString('base64') })
  }
  return out
}

function tryConnect(): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: PROBE_ADDRESS, port: PROBE_PORT })
    const timer = setTimeout(() => {
      socket.destroy()
      resolve('TIMEOUT')
    }, PROBE_CONNECT_TIMEOUT_MS)
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.destroy()
      resolve('CONNECTED')
    })
    socket.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      resolve(error.code ?? 'ERROR')
    })
  })
}

/** The inside half: runs in the sandbox as `credproxy demo --probe ...`. */
/** Inside: one request to the demo upstream with the placeholder, one to a host with no rule. */
async function probeEgress(env: NodeJS.ProcessEnv): Promise<ProbeReport['egress']> {
  const placeholder = env[DEMO_EGRESS_ENV] ?? ''
  let status = 0
  let body = ''
  try {
    // Plain fetch: the credproxy preload sends it through HTTPS_PROXY.
    const res = await fetch(`https://${DEMO_EGRESS_HOST}/`, { headers: { authorization: `Bearer ${placeholder}` } })
    status = res.status
    body = (await res.text()).slice(0, 200)
  } catch (error) {
    const cause = (error as { cause?: { message?: string; cause?: { message?: string } } }).cause
    body = String(cause?.cause?.message ?? cause?.message ?? error)
  }
  let other: string
  try {
    const res = await fetch(`https://${DEMO_EGRESS_OTHER_HOST}/`, { headers: { authorization: `Bearer ${placeholder}` } })
    other = `answered ${res.status}`
  } catch (error) {
    const cause = (error as { cause?: { message?: string; cause?: { message?: string } } }).cause
    other = `refused (${String(cause?.cause?.message ?? cause?.message ?? error).slice(0, 120)})`
  }
  return { placeholder, status, body, other }
}

async function probe(options: { key: string; decoy: string; hidden: string[] }, io: CliIO): Promise<number> {
  if (!isProxyMode(io.env)) throw new CredproxyError('FAILED', '--probe runs only inside the demo sandbox', { hint: 'Run: credproxy demo' })
  const env: Record<string, string> = {}
  for (const [name, value] of Object.entries(io.env)) if (value !== undefined) env[name] = value
  const keys = createProviderKeyStorage({ env: io.env })
  const fetched = await attempt(() => keys.getKey(options.key))
  const decoy = await attempt(() => keys.getKey(options.decoy))
  let hasRefresh = false
  const token = await attempt(async () => {
    const t = await createTokenStore({ env: io.env }).getToken(DEMO_PROVIDER, DEFAULT_BUCKET)
    hasRefresh = t !== null && 'refresh_token' in t
    return t?.access_token ?? null
  })
  const home = io.env['HOME'] ?? '/'
  const { files, skipped } = collectFiles([home, '/tmp', '/var/tmp', '/run', '/dev/shm', io.cwd])
  const netdev = readSmall('/proc/net/dev')?.toString('utf8') ?? ''
  const interfaces = netdev
    .split('\n')
    .slice(2)
    .map((line) => line.split(':')[0]?.trim() ?? '')
    .filter((name) => name !== '')
  const report: ProbeReport = {
    fetched,
    decoy,
    token: { ...token, hasRefresh },
    env,
    processes: processes(),
    files,
    skipped,
    interfaces,
    connect: await tryConnect(),
    visibleHidden: options.hidden.filter((path) => existsSync(path) && collectFiles([path]).files.length > 0),
    ...(io.env[DEMO_EGRESS_ENV] === undefined ? {} : { egress: await probeEgress(io.env) }),
  }
  writeLine(io.stdout, JSON.stringify(report))
  return EXIT.OK
}

function occurrences(report: ProbeReport, needle: string): string[] {
  const where: string[] = []
  const has = (text: string): boolean => needle !== '' && text.includes(needle)
  for (const [name, value] of Object.entries(report.env)) if (has(name) || has(value)) where.push(`env ${name}`)
  for (const p of report.processes) {
    if (has(Buffer.from(p.cmdline, 'base64').toString('latin1'))) where.push(`/proc/${p.pid}/cmdline`)
    if (has(Buffer.from(p.environ, 'base64').toString('latin1'))) where.push(`/proc/${p.pid}/environ`)
  }
  for (const f of report.files) if (has(Buffer.from(f.data, 'base64').toString('latin1'))) where.push(f.path)
  return where
}

/** The host half's verdict on a probe report. */
export function judge(
  report: ProbeReport,
  secrets: { key: string; keyName: string; decoy: string; decoyName: string; accessToken: string; refreshToken: string; sessionSecret: string; egressKey?: string; egressReceived?: string[] },
): Check[] {
  const checks: Check[] = []
  // The session secret's one sanctioned place inside is its hand-off file (dev-docs/protocol.md 3.3).
  const leaks = (needle: string, allowed?: string): string => {
    const where = occurrences(report, needle).filter((place) => place !== allowed)
    return where.length === 0 ? '' : ` FOUND in ${where.slice(0, 5).join(', ')}`
  }
  checks.push({
    ok: report.fetched.ok && report.fetched.value === secrets.key,
    label: `fetched ${secrets.keyName} through the socket${report.fetched.ok ? (report.fetched.value === secrets.key ? ' (matches the host value)' : ' (WRONG value)') : ` (failed: ${report.fetched.code ?? '?'})`}`,
  })
  checks.push({
    ok: !report.decoy.ok && report.decoy.code === 'NOT_GRANTED',
    label: `the ungranted key ${secrets.decoyName} is refused (${report.decoy.ok ? 'it was NOT refused' : report.decoy.code ?? '?'})`,
  })
  checks.push({
    ok: report.token.ok && report.token.value === secrets.accessToken && !report.token.hasRefresh,
    label: `fetched the access token of ${DEMO_PROVIDER}, without its refresh token${report.token.hasRefresh ? ' (refresh_token PRESENT)' : ''}${report.token.ok ? '' : ` (failed: ${report.token.code ?? '?'})`}`,
  })
  const onlyLoopback = report.interfaces.every((name) => name === 'lo')
  checks.push({
    ok: onlyLoopback && report.connect !== 'CONNECTED',
    label: `no network: interfaces ${report.interfaces.join(', ') || 'none'}; connect to ${PROBE_ADDRESS}:${PROBE_PORT} -> ${report.connect}`,
  })
  checks.push({
    ok: report.visibleHidden.length === 0,
    label: `credproxy's own files are not visible${report.visibleHidden.length === 0 ? '' : `: ${report.visibleHidden.join(', ')} IS visible`}`,
  })
  if (secrets.egressKey !== undefined) {
    const egress = report.egress
    const injected = secrets.egressReceived?.includes(`Bearer ${secrets.egressKey}`) === true
    checks.push({
      ok: egress !== undefined && egress.status === 200 && injected && egress.placeholder !== '' && egress.placeholder !== secrets.egressKey,
      label: `egress: fetch to https://${DEMO_EGRESS_HOST}/ with the placeholder -> ${egress?.status ?? '?'}${egress !== undefined && egress.status === 0 ? ` (${egress.body})` : ''}; the upstream ${injected ? 'got the real key (injected on the host)' : 'did NOT get the real key'}`,
    })
    checks.push({ ok: egress !== undefined && egress.other.startsWith('refused'), label: `egress: https://${DEMO_EGRESS_OTHER_HOST}/ (no rule) ${egress?.other ?? 'not tried'}` })
  }
  const scanned = `${report.files.length} files, ${report.processes.length} processes (cmdline + environ), ${Object.keys(report.env).length} env vars`
  for (const [label, needle] of [
    ['the ungranted key', secrets.decoy],
    ['the refresh token', secrets.refreshToken],
    [`the session secret (besides its hand-off file ${SANDBOX_SECRET_FILE})`, secrets.sessionSecret],
    [`${secrets.keyName} (outside the fetch)`, secrets.key],
    ...(secrets.egressKey === undefined ? [] : ([['the egress key (injected on the host only)', secrets.egressKey]] as const)),
  ] as const) {
    const found = leaks(needle, needle === secrets.sessionSecret ? SANDBOX_SECRET_FILE : undefined)
    checks.push({ ok: found === '', label: `${label}: not in ${scanned}${found}` })
  }
  return checks
}

function randomSecret(prefix: string): string {
  return `${prefix}-${randomBytes(24).toString('hex')}`
}

/**
 * The first command on a fresh machine finishes the set-up itself: as root with
 * apt-get, install bubblewrap (saying so); otherwise stop with the one command to run.
 */
async function ensureBubblewrap(io: CliIO): Promise<void> {
  let problem = probeBwrap(io.env)
  if (problem === null) return
  if (findOnPath('bwrap', io.env) === null) {
    if (!canInstallDebianPackages(io.env)) {
      throw new CredproxyError(
        'UNAVAILABLE',
        'the demo needs bubblewrap (bwrap), which is not installed',
        { hint: `Install it, then run the demo again: ${installCommand(DEMO_PACKAGES, io.env)}` },
      )
    }
    if (!(await installDebianPackages(DEMO_PACKAGES, io.env, io.stderr))) {
      throw new CredproxyError('UNAVAILABLE', 'installing bubblewrap with apt-get failed (its output is above)', { hint: 'Fix the apt-get problem, then run: npx credproxy demo' })
    }
    problem = findOnPath('bwrap', io.env) === null ? 'apt-get finished, but there is still no bwrap on PATH' : probeBwrap(io.env)
    if (problem === null) return
  }
  throw new CredproxyError('UNAVAILABLE', `the demo needs bubblewrap: ${problem}`, { hint: 'Fix that, then run: npx credproxy demo (`credproxy doctor` checks everything)' })
}

async function demo(json: boolean, io: CliIO): Promise<number> {
  await ensureBubblewrap(io)
  const color = !json && useColor(io.stdout, io.env)
  const mark = (ok: boolean): string => statusMark(ok, color, '✗ FAIL')
  const say = (line: string): void => {
    if (!json) writeLine(io.stdout, line)
  }
  const suffix = randomBytes(4).toString('hex').toUpperCase()
  const keyName = `DEMO_API_KEY_${suffix}`
  const decoyName = `DEMO_UNGRANTED_KEY_${suffix}`
  const secrets = {
    key: randomSecret('demo-key'),
    keyName,
    decoy: randomSecret('demo-ungranted'),
    decoyName,
    accessToken: randomSecret('demo-access'),
    refreshToken: randomSecret('demo-refresh'),
    sessionSecret: '',
  }
  const paths = resolvePaths(io.env)
  const stores = await openHostStores({ env: io.env, paths, log: logLineTo(io.stderr) })
  const where = stores.backend === 'keyring' ? 'the OS keyring' : `encrypted files in ${paths.dataDir}`
  say(`credproxy demo: throwaway credentials in ${where}, a bubblewrap sandbox, and what it can see`)
  const workdir = await mkdtemp(join(tmpdir(), 'credproxy-demo-'))
  const checks: Check[] = []
  let removedAll = false
  const egressKeyName = `DEMO_EGRESS_KEY_${suffix}`
  const egressKey = randomSecret('demo-egress')
  const upstream = await startDemoUpstream()
  try {
    await stores.keys.saveKey(egressKeyName, egressKey)
    await stores.keys.saveKey(keyName, secrets.key)
    await stores.keys.saveKey(decoyName, secrets.decoy)
    const expiry = Math.floor(Date.now() / 1000) + 3600
    await stores.tokens.saveToken(DEMO_PROVIDER, { access_token: secrets.accessToken, refresh_token: secrets.refreshToken, token_type: 'Bearer', expiry }, DEFAULT_BUCKET)
    say(`  stored ${keyName} (granted), ${decoyName} (not granted), a ${DEMO_PROVIDER} token with a refresh token, and ${egressKeyName} (egress only)`)
    const stdout = new PassThrough()
    const chunks: Buffer[] = []
    stdout.on('data', (chunk: Buffer) => chunks.push(chunk))
    const stdin = new PassThrough()
    stdin.end()
    const hidden = [paths.dataDir, paths.stateDir, paths.configDir, paths.runtimeDir]
    const code = await runCommand(
      {
        sandbox: 'bwrap',
        grants: { providers: [{ provider: DEMO_PROVIDER }], keys: [keyName], capabilities: ['read'] },
        allowNetwork: false,
        legacyClients: false,
        binds: [],
        image: undefined,
        verbose: false,
        egressRules: [DEMO_EGRESS_RULE],
        extraEgressRules: [
          EgressRuleSchema.parse({
            name: DEMO_EGRESS_RULE,
            hosts: [DEMO_EGRESS_HOST],
            credential: { key: egressKeyName },
            inject: { header: 'authorization', format: 'Bearer {}' },
            upstream: `127.0.0.1:${upstream.port}`,
            ca: upstream.caFile,
            env: [DEMO_EGRESS_ENV],
          }),
        ],
        command: ['credproxy', 'demo', '--probe', '--key', keyName, '--decoy', decoyName, ...hidden.flatMap((h) => ['--hidden', h])],
      },
      // The decoy refusal is expected: its hint would only confuse, so the sandbox's stderr is kept.
      { ...io, stdin, stdout, stderr: new PassThrough(), cwd: workdir },
      (session: StartedSession) => {
        secrets.sessionSecret = session.secret.toString('hex')
      },
      // One opening of the store (keyring probe, key derivation) serves both halves.
      stores,
    )
    say(`  ran: credproxy run --sandbox bwrap --grant ${DEMO_PROVIDER} --grant-key ${keyName} --egress ${DEMO_EGRESS_RULE} -- credproxy demo --probe ...`)
    const parsed = ProbeReportSchema.safeParse(safeJson(Buffer.concat(chunks).toString('utf8')))
    if (code !== 0 || !parsed.success) {
      checks.push({ ok: false, label: `the sandboxed probe failed (exit ${code}); run \`credproxy run --sandbox bwrap -- true\` to see why` })
    } else {
      checks.push(...judge(parsed.data, { ...secrets, egressKey, egressReceived: upstream.received }))
    }
  } finally {
    await upstream.close()
    const removed = await Promise.allSettled([
      stores.keys.deleteKey(egressKeyName),
      stores.keys.deleteKey(keyName),
      stores.keys.deleteKey(decoyName),
      stores.tokens.removeToken(DEMO_PROVIDER, DEFAULT_BUCKET),
    ])
    removedAll = removed.every((r) => r.status === 'fulfilled')
    await stores.tokens.close?.()
    await rm(workdir, { recursive: true, force: true })
  }
  checks.push({ ok: removedAll, label: 'removed the throwaway credentials from the store' })
  for (const check of checks) say(`  ${mark(check.ok)} ${check.label}`)
  const passed = checks.every((c) => c.ok)
  if (json) writeLine(io.stdout, JSON.stringify({ ok: passed, store: stores.backend, checks }))
  else say(passed ? 'credproxy demo: all checks passed' : 'credproxy demo: a check FAILED (see above)')
  return passed ? EXIT.OK : EXIT.FAILURE
}

/** The egress part's throwaway HTTPS upstream: its own CA, records the Authorization header, never echoes it. */
async function startDemoUpstream(): Promise<{ port: number; caFile: string; received: string[]; close(): Promise<void> }> {
  const { SessionCa } = await import('../egress/ca.js')
  const ca = await SessionCa.create('credproxy demo upstream')
  const leaf = await ca.leafFor(DEMO_EGRESS_HOST)
  const dir = await mkdtemp(join(tmpdir(), 'credproxy-demo-ca-'))
  const caFile = join(dir, 'upstream-ca.pem')
  await writeFile(caFile, ca.certPem)
  const received: string[] = []
  const server = createHttpsServer({ cert: leaf.certPem, key: leaf.keyPem }, (req, res) => {
    received.push(req.headers.authorization ?? '')
    req.resume()
    res.end('hello from the demo upstream\n')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    caFile,
    received,
    close: async () => {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
      await rm(dir, { recursive: true, force: true })
    },
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text.trim().split('\n').pop() ?? '')
  } catch {
    return null
  }
}

export const command: Command = {
  name: 'demo',
  help,
  async run(args, io) {
    const values = parseOptions(
      'demo',
      args,
      {
        json: { type: 'boolean' },
        probe: { type: 'boolean' },
        key: { type: 'string' },
        decoy: { type: 'string' },
        hidden: { type: 'string', multiple: true },
      },
      { hint: 'Run `credproxy demo --help`.' },
    )
    if (values.probe === true) {
      if (values.key === undefined || values.decoy === undefined) throw new UsageError('--probe needs --key and --decoy')
      return probe({ key: values.key, decoy: values.decoy, hidden: values.hidden ?? [] }, io)
    }
    return demo(values.json === true, io)
  },
}
