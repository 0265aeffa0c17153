// The README's first command on a machine without bubblewrap (issue 13, first hour):
// `npx credproxy demo` run from the clone with a PATH that has every tool but bwrap.
// Not root: it stops with the one install command. Root with apt-get: it runs the
// real apt-get (bubblewrap is installed on this machine, so apt-get has nothing to
// do and bwrap stays off this PATH; the demo then says so). What cannot be tested
// here for real: apt-get actually installing the package on a machine without it.
import { spawnSync } from 'node:child_process'
import { chmodSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'

const REPO = fileURLToPath(new URL('../../..', import.meta.url))
const isRoot = process.getuid?.() === 0
const hasSetpriv = spawnSync('setpriv', ['--version']).status === 0

describe('npx credproxy demo without bubblewrap on PATH', () => {
  let bin: string
  let home: string
  beforeAll(() => {
    // Every executable of the real PATH, first one wins, except bwrap.
    bin = mkdtempSync(join(tmpdir(), 'cp-nobwrap-bin-'))
    const seen = new Set<string>()
    for (const dir of (process.env['PATH'] ?? '').split(':')) {
      let entries: string[]
      try {
        entries = readdirSync(dir)
      } catch {
        continue
      }
      for (const name of entries) {
        if (name === 'bwrap' || seen.has(name)) continue
        seen.add(name)
        symlinkSync(join(dir, name), join(bin, name))
      }
    }
    chmodSync(bin, 0o755)
    home = mkdtempSync(join(tmpdir(), 'cp-nobwrap-home-'))
    chmodSync(home, 0o777)
  })
  afterAll(() => {
    rmSync(bin, { recursive: true, force: true })
    rmSync(home, { recursive: true, force: true })
  })

  const env = (): NodeJS.ProcessEnv => ({
    PATH: bin,
    HOME: home,
    CREDPROXY_HOME: join(home, 'credproxy'),
    npm_config_cache: join(home, 'npm-cache'),
    npm_config_update_notifier: 'false',
  })

  test.runIf(isRoot && hasSetpriv)('as an ordinary user: exit 6 with the one command to run', () => {
    const result = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', 'npx', 'credproxy', 'demo'], {
      cwd: REPO,
      env: env(),
      encoding: 'utf8',
      timeout: 60_000,
    })
    expect(result.stderr).toContain('credproxy: the demo needs bubblewrap (bwrap), which is not installed')
    expect(result.stderr).toContain('Install it, then run the demo again: sudo apt-get update && sudo apt-get install -y --no-install-recommends bubblewrap')
    expect(result.stderr).not.toContain('installing bubblewrap')
    expect(result.status).toBe(6)
  })

  test.runIf(isRoot)('as root with apt-get: it runs apt-get itself and says what it installs', () => {
    const result = spawnSync('npx', ['credproxy', 'demo'], { cwd: REPO, env: env(), encoding: 'utf8', timeout: 300_000 })
    expect(result.stderr).toContain(
      'credproxy: installing bubblewrap: apt-get update && apt-get install -y --no-install-recommends bubblewrap',
    )
    // apt-get succeeded (else: "installing bubblewrap with apt-get failed"); the package was already
    // there, in /usr/bin, which this PATH leaves out on purpose.
    expect(result.stderr).not.toContain('with apt-get failed')
    expect(result.stderr).toContain('apt-get finished, but there is still no bwrap on PATH')
    expect(result.status).toBe(6)
  }, 320_000)
})
