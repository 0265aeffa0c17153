// The README's two set-up commands, run as written: the first (install, then the
// demo) end to end; the second is what CI runs, so it must be exactly .ci/run's
// command (running it here would run this suite inside itself).
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, test } from 'vitest'

const repoRoot = resolve(fileURLToPath(new URL('../../..', import.meta.url)))
const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8')

function setupCommands(): string[] {
  const block = /On a fresh machine[^\n]*\n\n```sh\n([\s\S]*?)```/.exec(readme)
  if (block?.[1] === undefined) throw new Error('README has no set-up block after "On a fresh machine"')
  return block[1].split('\n').filter((line) => line.trim() !== '')
}

describe('README set-up commands', () => {
  test('there are exactly two: install-and-run, then test', () => {
    expect(setupCommands()).toEqual(['npm install && npx credproxy demo', 'npm test'])
  })

  test('.ci/run runs the test command exactly', () => {
    const ci = readFileSync(join(repoRoot, '.ci/run'), 'utf8')
    const commands = ci.split('\n').filter((line) => line.trim() !== '' && !line.startsWith('#') && !line.startsWith('set ') && !line.startsWith('cd '))
    expect(commands).toEqual([setupCommands()[1]])
  })

  test('the first command installs and runs the demo, whose checks all pass', () => {
    const home = mkdtempSync(join(tmpdir(), 'cp-readme-'))
    try {
      const [first] = setupCommands()
      const result = spawnSync('sh', ['-c', first ?? 'false'], {
        cwd: repoRoot,
        env: { ...process.env, CREDPROXY_HOME: home, NO_COLOR: '1' },
        encoding: 'utf8',
        timeout: 120_000,
      })
      expect(result.stdout).toContain('all checks passed')
      expect(result.stdout).not.toContain('FAIL')
      expect(result.status).toBe(0)
    } finally {
      rmSync(home, { recursive: true, force: true })
    }
  }, 150_000)
})
