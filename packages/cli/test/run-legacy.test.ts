// `credproxy run --legacy-clients` serves llxprt-code's inner client unchanged:
// its v1 handshake carries no token, so only the peer check admits it. A client
// inside the sandbox is served; the same client on the host (same uid, outside
// the sandbox) is refused before any byte is read. Needs `npm run build`.
import { spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, test } from 'vitest'
import { main } from '../src/cli.js'
import { openHostStores } from '../src/storage/index.js'

const CLIENT = fileURLToPath(new URL('./fixtures/legacy-client.mjs', import.meta.url))
const KEY_VALUE = 'legacy-visible-key-1b7e'

const dirs: string[] = []
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

function answers(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
}

describe('credproxy run --legacy-clients', () => {
  test("llxprt-code's tokenless v1 client is served inside the sandbox and refused outside it", async () => {
    const home = mkdtempSync(join(tmpdir(), 'cp-legacy-'))
    const cwd = mkdtempSync(join(tmpdir(), 'cp-legacy-cwd-'))
    dirs.push(home, cwd)
    const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: '/root', CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' }
    const stores = await openHostStores({ env, log: () => undefined })
    await stores.keys.saveKey('K', KEY_VALUE)

    // Inside: print the socket path for the host-side attempt, then ask for the key.
    // The sandbox stays up until the host attempt is done (the host writes ./host-done).
    const script = `echo "SOCKET=$CREDPROXY_SOCKET"; node ${CLIENT} "$CREDPROXY_SOCKET" get_api_key '{"name":"K"}'; i=0; while [ ! -f host-done ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done`
    const stdout = new PassThrough()
    const stderr = new PassThrough()
    let out = ''
    let err = ''
    let hostAttempt: Promise<string> | undefined
    stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      // The sandbox sees the socket at a fixed path; on the host it is in the session dir.
      if (hostAttempt === undefined && out.includes('SOCKET=')) {
        hostAttempt = hostClient(home).finally(() => writeFileSync(join(cwd, 'host-done'), ''))
      }
    })
    stderr.on('data', (chunk: Buffer) => (err += chunk.toString()))
    const stdin = new PassThrough()
    stdin.end()
    const code = await main(['run', '--sandbox', 'bwrap', '--legacy-clients', '--grant-key', 'K', '--', 'sh', '-c', script], {
      stdin,
      stdout,
      stderr,
      env,
      cwd,
    })
    expect(code).toBe(0)
    expect(err).toContain('--legacy-clients')
    const inside = answers(out)
    expect(inside[0]).toMatchObject({ op: 'handshake', ok: true, data: { version: 1 } })
    expect(inside[1]).toMatchObject({ ok: true, data: { key: KEY_VALUE } })

    const outside = answers(await (hostAttempt ?? Promise.resolve('')))
    expect(outside[0]).toMatchObject({ ok: false, code: 'FORBIDDEN' })
    expect(JSON.stringify(outside)).not.toContain(KEY_VALUE)
  }, 60_000)
})

/** The same client on the host, against the session's real socket path. */
async function hostClient(home: string): Promise<string> {
  const runDir = join(home, 'run')
  const session = readdirSync(runDir).find((entry) => !entry.endsWith('.sock'))
  if (session === undefined) return ''
  const child = spawn(process.execPath, [CLIENT, join(runDir, session, 'broker.sock'), 'get_api_key', '{"name":"K"}'])
  let out = ''
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()))
  await new Promise((resolve) => child.on('close', resolve))
  return out
}
