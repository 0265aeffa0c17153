// `credproxy run --legacy-clients` serves llxprt-code's inner client unchanged:
// its v1 handshake carries no token, so only the peer check admits it. A client
// inside the sandbox is served; the same client on the host (same uid, outside
// the sandbox) is refused before any byte is read. Needs `npm run build`.
import { spawn } from 'node:child_process'
import { readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, test } from 'vitest'
import { makeCliHome, removeCliHomes, runCli } from './helpers/cli-runner.js'

const CLIENT = fileURLToPath(new URL('./fixtures/legacy-client.mjs', import.meta.url))
const LLXPRT_CLIENT = fileURLToPath(new URL('./fixtures/llxprt-v2-client.mjs', import.meta.url))
const KEY_VALUE = 'legacy-visible-key-1b7e'

afterEach(removeCliHomes)

function answers(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
}

describe('credproxy run --legacy-clients', () => {
  test("llxprt-code's tokenless v1 client is served inside the sandbox and refused outside it", async () => {
    const { env, home, cwd } = await makeCliHome('cp-legacy-', (stores) => stores.keys.saveKey('K', KEY_VALUE), { HOME: '/root' })

    // Inside: print the socket path for the host-side attempt, then ask for the key.
    // The sandbox stays up until the host attempt is done (the host writes ./host-done).
    const script = `echo "SOCKET=$CREDPROXY_SOCKET"; node ${CLIENT} "$CREDPROXY_SOCKET" get_api_key '{"name":"K"}'; i=0; while [ ! -f host-done ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done`
    let hostAttempt: Promise<string> | undefined
    const onStdout = (out: string): void => {
      // The sandbox sees the socket at a fixed path; on the host it is in the session dir.
      if (hostAttempt === undefined && out.includes('SOCKET=')) {
        hostAttempt = hostClient(home).finally(() => writeFileSync(join(cwd, 'host-done'), ''))
      }
    }
    const { code, stdout: out, stderr: err } = await runCli(['run', '--sandbox', 'bwrap', '--legacy-clients', '--grant-key', 'K', '--', 'sh', '-c', script], {
      env,
      cwd,
      onStdout,
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

describe('credproxy run --legacy-clients --grant-all: llxprt-code finds the broker on its own', () => {
  test('its v2 client reads LLXPRT_CREDENTIAL_SOCKET and its token from LLXPRT_CAPABILITY_FD; a missing name is null/false to it, not an exception', async () => {
    const { env, cwd } = await makeCliHome('cp-llxprt-', (stores) => stores.keys.saveKey('K', KEY_VALUE), { HOME: '/root' })
    const requests = ['get_api_key', '{"name":"K"}', 'has_api_key', '{"name":"MISSING"}', 'get_api_key', '{"name":"MISSING"}']
    const script = `[ "$LLXPRT_CREDENTIAL_SOCKET" = "$CREDPROXY_SOCKET" ] && echo SAME_SOCKET; node ${LLXPRT_CLIENT} "$@"`
    const { code, stdout } = await runCli(['run', '--sandbox', 'bwrap', '--legacy-clients', '--grant-all', '--', 'sh', '-c', script, 'sh', ...requests], { env, cwd })
    expect(code).toBe(0)
    expect(stdout).toContain('SAME_SOCKET')
    const seen = answers(stdout)
    expect(seen[0]).toEqual({ socketSet: true, tokenValid: true })
    expect(seen[1]).toMatchObject({ op: 'handshake', ok: true, data: { version: 2 } })
    expect(seen[2]).toMatchObject({ ok: true, data: { key: KEY_VALUE } })
    expect(seen[3]).toMatchObject({ ok: true, data: { exists: false } })
    expect(seen[4]).toMatchObject({ ok: false, code: 'NOT_FOUND' })
  }, 60_000)

  test('without --legacy-clients nothing of llxprt-code is set', async () => {
    const { env, cwd } = await makeCliHome('cp-llxprt-')
    const { stdout } = await runCli(['run', '--sandbox', 'bwrap', '--', 'sh', '-c', 'env | grep -c ^LLXPRT_ || true'], { env, cwd })
    expect(stdout.trim()).toBe('0')
  })
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
