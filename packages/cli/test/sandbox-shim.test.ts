// The `credproxy` command inside a sandbox runs this installation. When the
// checkout sits under a directory the sandbox hides ($HOME, /tmp), every
// directory Node resolves credproxy's dependencies from must be re-bound, or
// `credproxy` inside fails with ERR_MODULE_NOT_FOUND.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, realpathSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, test } from 'vitest'
import { credproxyBinPath, runtimeDirs } from '../src/sandbox/shim.js'

const repoRoot = resolve(fileURLToPath(new URL('../../..', import.meta.url)))

describe('runtimeDirs', () => {
  test('includes the workspace node_modules and the real directory of @credproxy/core', () => {
    const dirs = runtimeDirs()
    expect(dirs).toContain(join(repoRoot, 'node_modules'))
    expect(dirs).toContain(realpathSync(join(repoRoot, 'packages', 'core')))
    expect(dirs).toContain(realpathSync(join(repoRoot, 'packages', 'cli')))
    for (const dir of dirs) expect(existsSync(dir)).toBe(true)
  })

  test('the shim target is this installation', () => {
    expect(credproxyBinPath()).toBe(realpathSync(join(repoRoot, 'packages', 'cli', 'bin', 'credproxy.js')))
  })
})

describe('credproxy inside a sandbox that hides the checkout', () => {
  test('runs when HOME is the checkout itself (the sandbox puts a tmpfs over HOME)', () => {
    const scratch = mkdtempSync(join(tmpdir(), 'cp-shim-'))
    try {
      const result = spawnSync(
        process.execPath,
        [join(repoRoot, 'packages/cli/bin/credproxy.js'), 'run', '--sandbox', 'bwrap', '--', 'credproxy', '--version'],
        {
          cwd: scratch,
          env: { PATH: process.env['PATH'], HOME: repoRoot, CREDPROXY_HOME: join(scratch, 'home'), CREDPROXY_KEYRING: 'off' },
          encoding: 'utf8',
          timeout: 30_000,
        },
      )
      expect(result.stderr).not.toContain('ERR_MODULE_NOT_FOUND')
      expect(result.stdout.trim()).toBe('0.1.0')
      expect(result.status).toBe(0)
    } finally {
      rmSync(scratch, { recursive: true, force: true })
    }
  })
})
