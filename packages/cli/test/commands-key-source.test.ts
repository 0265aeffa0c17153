// `credproxy key source` writes sources.json entries; `key list` shows which names
// come from a source by kind and program name only (never the arguments).
import { readFileSync } from 'node:fs'
import { afterEach, describe, expect, test } from 'vitest'
import { sourcesFilePath } from '../src/credentials/sources-config.js'
import { resolvePaths } from '../src/paths.js'
import { makeCliHome, removeCliHomes, runCli } from './helpers/cli-runner.js'

afterEach(removeCliHomes)

describe('credproxy key source', () => {
  test('writes entries that key list shows by program name, never the arguments', async () => {
    const { env, cwd } = await makeCliHome('cp-key-source-', (stores) => stores.keys.saveKey('STORED', 'v'))
    const op = await runCli(['key', 'source', 'OPENAI_API_KEY', '--ttl', '3600', '--pass-env', 'OP_SERVICE_ACCOUNT_TOKEN', '--', 'op', 'read', 'op://Private/openai/credential'], { env, cwd })
    expect(op.code).toBe(0)
    expect(op.stderr).toContain('OPENAI_API_KEY is now served from command op')
    expect((await runCli(['key', 'source', 'gcloud/default', '--json-output', '--', '/usr/bin/mint-gcloud'], { env, cwd })).code).toBe(0)
    expect((await runCli(['key', 'source', 'CI_TOKEN', '--env', 'CI_TOKEN'], { env, cwd })).code).toBe(0)

    const file = JSON.parse(readFileSync(sourcesFilePath(resolvePaths(env)), 'utf8')) as unknown
    expect(file).toEqual({
      keys: {
        OPENAI_API_KEY: { command: ['op', 'read', 'op://Private/openai/credential'], ttl_seconds: 3600, pass_env: ['OP_SERVICE_ACCOUNT_TOKEN'] },
        CI_TOKEN: { env: 'CI_TOKEN' },
      },
      tokens: { 'gcloud/default': { command: ['/usr/bin/mint-gcloud'], output: 'json' } },
    })

    const list = await runCli(['key', 'list'], { env, cwd })
    expect(list.stdout).toBe('CI_TOKEN  (source: env CI_TOKEN)\nOPENAI_API_KEY  (source: command op)\nSTORED\ngcloud/default  (source: command mint-gcloud)\n')
    expect(list.stdout).not.toContain('op://')
    const json = JSON.parse((await runCli(['key', 'list', '--json'], { env, cwd })).stdout) as { keys: string[]; sources: Record<string, string> }
    expect(json.keys).toContain('STORED')
    expect(json.sources['OPENAI_API_KEY']).toBe('command op')

    // On the host, key get reads the store only: a sourced name says where it comes from.
    const get = await runCli(['key', 'get', 'OPENAI_API_KEY'], { env, cwd })
    expect(get.code).toBe(3)
    expect(get.stderr).toContain('OPENAI_API_KEY comes from a source (command op)')
    expect(get.stderr).toContain('credproxy doctor --run-sources')
  })

  test('a bad entry is refused before anything is written, naming the field', async () => {
    const { env, cwd } = await makeCliHome('cp-key-source-')
    const bad = await runCli(['key', 'source', 'A', '--timeout', '0', '--', 'gh', 'auth', 'token'], { env, cwd })
    expect(bad.code).not.toBe(0)
    expect(bad.stderr).toContain('invalid field keys.A.timeout_ms')
    const none = await runCli(['key', 'source', 'A'], { env, cwd })
    expect(none.stderr).toContain('give exactly one source')
    expect(() => readFileSync(sourcesFilePath(resolvePaths(env)))).toThrow()
  })
})
