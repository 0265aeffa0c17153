// A refusal inside `credproxy run` reaches the terminal as one line, once: the refused
// command's own error, which carries the pasteable grant command. The real binary runs
// with its stderr inherited by the sandbox, as on a terminal. Needs `npm run build`.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, test } from 'vitest'
import { makeCliHome, removeCliHomes } from './helpers/cli-runner.js'

const BIN = fileURLToPath(new URL('../bin/credproxy.js', import.meta.url))

afterEach(() => removeCliHomes())

describe.runIf(process.platform === 'linux')('refusals inside credproxy run', () => {
  test('an ungranted key and a save without --allow-save: one line each, with the command to paste', async () => {
    const { env, cwd } = await makeCliHome('cp-refusal-')
    const script = `credproxy key get K; echo '{"access_token":"a","token_type":"Bearer","expires_in":600}' | credproxy auth import P`
    const result = spawnSync(process.execPath, [BIN, 'run', '--sandbox', 'bwrap', '--grant', 'P', '--', 'sh', '-c', script], {
      cwd,
      env,
      encoding: 'utf8',
      timeout: 30_000,
    })
    const lines = result.stderr.trimEnd().split('\n')
    const key = lines.filter((line) => line.includes('key K'))
    expect(key).toHaveLength(1)
    expect(key[0]).toMatch(/^credproxy: key K is not granted to this session; start it with --grant-key K or run `credproxy grant --session [0-9a-f]+ --key K` on the host \(NOT_GRANTED\)$/)
    const save = lines.filter((line) => line.includes('save'))
    expect(save).toHaveLength(1)
    expect(save[0]).toMatch(/start it with --allow-save or run `credproxy grant --session [0-9a-f]+ --capability save` on the host/)
    expect(result.stderr).not.toContain('--capability save or')
  })
})
