// What `credproxy run` says before the command starts.
import { afterEach, expect, test } from 'vitest'
import { makeCliHome, removeCliHomes, runCli } from './helpers/cli-runner.js'

afterEach(() => removeCliHomes())

test.runIf(process.platform === 'linux')('--grant-key of a key not stored: a note naming `credproxy key set`, and the command still runs', async () => {
  const { env, cwd } = await makeCliHome('cp-notes-', (stores) => stores.keys.saveKey('STORED', 'v'))
  const result = await runCli(['run', '--sandbox', 'bwrap', '--grant-key', 'STORED', '--grant-key', 'MISSING', '--', 'true'], { env, cwd })
  expect(result.code).toBe(0)
  expect(result.stderr).toContain('credproxy: note: no API key named MISSING is stored on the host yet; the sandbox gets it once you run: credproxy key set MISSING\n')
  expect(result.stderr).not.toContain('named STORED')
})
