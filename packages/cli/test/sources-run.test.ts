// End to end in a real bubblewrap sandbox: a tool inside asks for a key, and the
// value is minted on the host by the source command declared in sources.json.
// Needs `npm run build` (the sandbox runs the built `credproxy`).
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, test } from 'vitest'
import { sourcesFilePath } from '../src/credentials/sources-config.js'
import { resolvePaths } from '../src/paths.js'
import { makeCliHome, removeCliHomes, runCli, type CliHome } from './helpers/cli-runner.js'

afterEach(removeCliHomes)

/** A host home whose sources.json serves MINTED from a script outside the sandbox's view of HOME. */
async function setup(body: string): Promise<CliHome & { runsFile: string }> {
  const home = await makeCliHome('cp-sources-run-')
  const bin = join(home.home, 'host-bin')
  mkdirSync(bin)
  const runsFile = join(bin, 'runs')
  const script = join(bin, 'mint.sh')
  writeFileSync(script, `#!/bin/sh\n${body.replaceAll('RUNS', runsFile)}\n`)
  chmodSync(script, 0o755)
  const paths = resolvePaths(home.env)
  mkdirSync(paths.configDir, { recursive: true })
  writeFileSync(sourcesFilePath(paths), JSON.stringify({ keys: { MINTED: { command: [script] } } }))
  return { ...home, runsFile }
}

describe('credproxy run with a command source', () => {
  test('`credproxy key get MINTED` inside bwrap prints the value the host command minted', async () => {
    const { env, cwd, runsFile } = await setup('v=minted-$(cat /proc/sys/kernel/random/uuid)\necho "$v" >> RUNS\necho "$v"')
    const result = await runCli(['run', '--sandbox', 'bwrap', '--grant-key', 'MINTED', '--', 'credproxy', 'key', 'get', 'MINTED'], { env, cwd })
    expect(result.code).toBe(0)
    const minted = readFileSync(runsFile, 'utf8').trim().split('\n')
    expect(minted).toHaveLength(1)
    expect(minted[0]).toMatch(/^minted-[0-9a-f-]{36}$/)
    expect(result.stdout.trim()).toBe(minted[0])
  })

  test('a failing source: the tool gets an error naming the host check, never the command\'s stderr', async () => {
    const { env, cwd } = await setup('echo "op: session for s3cr3t-account expired" >&2\nexit 1')
    const result = await runCli(['run', '--sandbox', 'bwrap', '--grant-key', 'MINTED', '--', 'credproxy', 'key', 'get', 'MINTED'], { env, cwd })
    expect(result.code).not.toBe(0)
    expect(result.stderr).toContain('credproxy doctor --run-sources')
    expect(result.stdout + result.stderr).not.toContain('s3cr3t')
  })
})
