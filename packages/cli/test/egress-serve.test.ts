// `credproxy serve --egress RULE --egress-port 0`: the egress proxy beside the broker,
// over the real host file store and the real audit log, driven with curl.
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { promisify } from 'node:util'
import { afterEach, describe, expect, test } from 'vitest'
import type { CliIO } from '../src/cli-io.js'
import { createServeCommand, parseServeArgs } from '../src/commands/serve.js'
import { resolvePaths } from '../src/paths.js'
import { auditLogPath } from '../src/audit/audit-format.js'
import { openHostStores } from '../src/storage/index.js'
import { startTestUpstream } from './helpers/egress-test-upstream.js'

const run = promisify(execFile)
const cleanups: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

interface Ready {
  socket: string
  session: string
  egress: { socket: string; caFile: string; placeholders: Record<string, string>; proxyUrl: string }
}

describe('credproxy serve --egress', () => {
  test('starts the egress proxy with the granted rule: curl via the TCP listener and via the Unix socket route', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cp-egress-serve-'))
    cleanups.push(() => rm(dir, { recursive: true, force: true }))
    const env = { ...process.env, CREDPROXY_HOME: dir, CREDPROXY_KEYRING: 'off' }
    const paths = resolvePaths(env)
    const stores = await openHostStores({ env, paths, log: () => undefined })
    await stores.keys.saveKey('EXAMPLE_KEY', 'served-real-secret')
    const upstream = await startTestUpstream(dir, (_req, res) => res.end('ok'))
    cleanups.push(() => upstream.close())
    await mkdir(paths.configDir, { recursive: true })
    await writeFile(
      join(paths.configDir, 'egress.json'),
      JSON.stringify({
        rules: [
          {
            name: 'example',
            hosts: ['api.example.test'],
            credential: { key: 'EXAMPLE_KEY' },
            inject: { header: 'authorization', format: 'Bearer {}' },
            route: '/example',
            upstream: `127.0.0.1:${upstream.port}`,
            ca: upstream.caFile,
          },
        ],
      }),
    )
    const stdout = new PassThrough()
    let out = ''
    const lineArrived = new Promise<void>((resolve) =>
      stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString()
        if (out.includes('\n')) resolve()
      }),
    )
    const io: CliIO = { stdin: new PassThrough(), stdout, stderr: new PassThrough(), env, cwd: process.cwd() }
    let stop!: () => void
    const running = createServeCommand({ waitForShutdown: () => new Promise<void>((resolve) => (stop = resolve)) }).run(['--egress', 'example', '--egress-port', '0'], io)
    await lineArrived
    const ready = JSON.parse(out.slice(0, out.indexOf('\n'))) as Ready
    const placeholder = ready.egress.placeholders.example ?? ''
    expect(Object.keys(ready.egress.placeholders)).toEqual(['example'])
    expect((await stat(ready.egress.socket)).mode & 0o777).toBe(0o600)

    const viaTcp = await run('curl', ['-sS', '--max-time', '20', '--proxy', ready.egress.proxyUrl, '--cacert', ready.egress.caFile, '-H', `authorization: Bearer ${placeholder}`, 'https://api.example.test/tcp'])
    expect(viaTcp.stdout).toBe('ok')
    const viaSocket = await run('curl', ['-sS', '--max-time', '20', '--unix-socket', ready.egress.socket, 'http://localhost/example/unix'])
    expect(viaSocket.stdout).toBe('ok')
    expect(upstream.received.map((request) => [request.url, request.headers.authorization])).toEqual([
      ['/tcp', 'Bearer served-real-secret'],
      ['/unix', 'Bearer served-real-secret'],
    ])

    stop()
    expect(await running).toBe(0)
    await expect(stat(ready.egress.socket)).rejects.toThrow()
    const audit = (await readFile(auditLogPath(paths), 'utf8')).split('\n').filter((line) => line.includes('"egress"'))
    expect(audit.length).toBeGreaterThanOrEqual(2)
    expect(audit.join('\n')).not.toContain('served-real-secret')
    expect(JSON.parse(audit[0] ?? '{}')).toMatchObject({ session: ready.session, event: 'egress', egress: { rule: 'example', host: 'api.example.test', injected: true } })
  })

  test('--egress-port without --egress, or a bad port, is a usage error', () => {
    expect(() => parseServeArgs(['--egress-port', '0'])).toThrow(/needs at least one --egress/)
    expect(() => parseServeArgs(['--egress', 'x', '--egress-port', '70000'])).toThrow(/0-65535/)
    expect(parseServeArgs(['--egress', 'github', '--egress', 'npm']).egressRules).toEqual(['github', 'npm'])
  })
})
