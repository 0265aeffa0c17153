// `credproxy run --egress RULE` in real bubblewrap without a network: real clients
// inside reach a local HTTPS upstream through the forwarder and the session's egress
// proxy, holding only the placeholder; the host injects the real secret.
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { makeCliHome, removeCliHomes, runCli, type CliHome } from './helpers/cli-runner.js'
import { startTestUpstream, type TestUpstream } from './helpers/egress-test-upstream.js'
import { resolvePaths } from '../src/paths.js'

const SECRET = 'egress-run-real-secret-0123456789'
const cleanups: Array<() => Promise<unknown>> = []
let upstream: TestUpstream
let scratch: CliHome

beforeAll(async () => {
  scratch = await makeCliHome('cp-egress-run-up-')
  upstream = await startTestUpstream(scratch.home, (req, res) => {
    res.setHeader('content-type', 'text/plain')
    res.end(`hello ${req.url ?? ''}`)
  }, { names: ['api.example.test', 'other.example.test'] })
})
afterAll(async () => {
  await upstream.close()
  removeCliHomes()
})
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
  upstream.received.length = 0
})

/** A home with the key stored and an egress.json rule pinned to the local upstream. */
async function egressHome(): Promise<CliHome> {
  const home = await makeCliHome('cp-egress-run-', (stores) => stores.keys.saveKey('EXAMPLE_KEY', SECRET))
  const paths = resolvePaths(home.env)
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
          env: ['EXAMPLE_TOKEN'],
          baseUrlEnv: 'EXAMPLE_BASE_URL',
        },
      ],
    }),
  )
  return home
}

describe('credproxy run --egress in bubblewrap', () => {
  test('curl inside reaches the rule host through the bridge; the upstream gets the real secret, the sandbox only the placeholder', async () => {
    const home = await egressHome()
    const script = [
      'curl -sS --max-time 20 -H "authorization: Bearer $EXAMPLE_TOKEN" https://api.example.test/with-placeholder',
      'echo',
      'curl -sS --max-time 20 https://api.example.test/no-credential',
      'echo',
      'curl -sS --max-time 20 "$EXAMPLE_BASE_URL/route"',
      'echo',
      'echo "token=$EXAMPLE_TOKEN"',
    ].join('; ')
    const result = await runCli(['run', '--sandbox', 'bwrap', '--egress', 'example', '--', 'sh', '-c', script], { env: home.env, cwd: home.cwd })
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    const lines = result.stdout.split('\n')
    expect(lines.slice(0, 3)).toEqual(['hello /with-placeholder', 'hello /no-credential', 'hello /route'])
    expect(lines[3]).toMatch(/^token=cpxph0[A-Za-z0-9]{22,}$/)
    expect(result.stdout).not.toContain(SECRET)
    expect(upstream.received.map((r) => [r.url, r.headers.authorization])).toEqual([
      ['/with-placeholder', `Bearer ${SECRET}`],
      ['/no-credential', `Bearer ${SECRET}`],
      ['/route', `Bearer ${SECRET}`],
    ])
  })
})
