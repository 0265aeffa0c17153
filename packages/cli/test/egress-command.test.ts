// `credproxy egress rules` and `credproxy egress test RULE`, against the host file store
// and a local HTTPS upstream pinned by an egress.json rule.
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { makeCliHome, removeCliHomes, runCli, type CliHome } from './helpers/cli-runner.js'
import { startTestUpstream, type TestUpstream } from './helpers/egress-test-upstream.js'
import { resolvePaths } from '../src/paths.js'

const SECRET = 'egress-command-secret-9f8e7d'
let upstream: TestUpstream
let home: CliHome

beforeAll(async () => {
  home = await makeCliHome('cp-egress-cmd-', (stores) => stores.keys.saveKey('EXAMPLE_KEY', SECRET))
  upstream = await startTestUpstream(home.home, (req, res) => {
    res.statusCode = req.headers.authorization === `Bearer ${SECRET}` ? 200 : 401
    res.end('upstream body never shown')
  })
  const paths = resolvePaths(home.env)
  await mkdir(paths.configDir, { recursive: true })
  const rule = (name: string, key: string): Record<string, unknown> => ({
    name,
    hosts: ['api.example.test'],
    credential: { key },
    inject: { header: 'authorization', format: 'Bearer {}' },
    upstream: `127.0.0.1:${upstream.port}`,
    ca: upstream.caFile,
    env: [`${name.toUpperCase()}_TOKEN`],
  })
  await writeFile(join(paths.configDir, 'egress.json'), JSON.stringify({ rules: [rule('example', 'EXAMPLE_KEY'), rule('missing', 'MISSING_KEY')] }))
})
afterAll(async () => {
  await upstream.close()
  removeCliHomes()
})

describe('credproxy egress', () => {
  test('rules lists presets and egress.json rules with their credential and whether it is stored', async () => {
    const result = await runCli(['egress', 'rules'], { env: home.env })
    expect(result.code).toBe(0)
    expect(result.stdout).toContain('example (egress.json)\n  hosts:      api.example.test\n  credential: key EXAMPLE_KEY (stored)\n  inside:     EXAMPLE_TOKEN')
    expect(result.stdout).toContain('credential: key MISSING_KEY (NOT stored')
    expect(result.stdout).toContain('github (preset)\n  hosts:      api.github.com, github.com, uploads.github.com\n  credential: key GITHUB_TOKEN (NOT stored')
    expect(result.stdout).toContain('inside:     GH_TOKEN, GITHUB_TOKEN')
    const json = JSON.parse((await runCli(['egress', 'rules', '--json'], { env: home.env })).stdout) as Array<{ name: string; stored: boolean }>
    expect(json.find((r) => r.name === 'example')?.stored).toBe(true)
    expect(result.stdout).not.toContain(SECRET)
  })

  test('test sends one request through a real proxy: 200 with the stored key, a failure naming the credential without one', async () => {
    const ok = await runCli(['egress', 'test', 'example', 'https://api.example.test/check'], { env: home.env })
    expect(ok.stdout).toBe('example: GET https://api.example.test/check -> 200\n')
    expect(ok.code).toBe(0)
    expect(upstream.received.at(-1)?.headers.authorization).toBe(`Bearer ${SECRET}`)
    const missing = await runCli(['egress', 'test', 'missing'], { env: home.env })
    expect(missing.code).toBe(1)
    expect(missing.stdout).toBe('missing: GET https://api.example.test/ -> 502 (credential-missing)\n')
    const unknown = await runCli(['egress', 'test', 'nope'], { env: home.env })
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toContain('no egress rule named nope')
    for (const out of [ok.stdout, ok.stderr, missing.stdout, missing.stderr]) expect(out).not.toContain(SECRET)
  })
})
