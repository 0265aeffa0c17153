// The README's two set-up commands, run as written: the first (install, then the
// demo) end to end; the second is what CI runs, so it must be exactly .ci/run's
// command (running it here would run this suite inside itself).
import { spawn, spawnSync } from 'node:child_process'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
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

describe('README "Use with an agent"', () => {
  /** The sh block of the section that contains marker. */
  function agentBlock(marker: string): string {
    const section = readme.slice(readme.indexOf('## Use with an agent'), readme.indexOf('## Embedding'))
    const block = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1] ?? '').find((b) => b.includes(marker))
    if (block === undefined) throw new Error(`no sh block with ${marker} in "Use with an agent"`)
    return block
  }

  test('`npm link -w packages/cli` puts a working credproxy on PATH (into a throwaway npm prefix), and `npm rm -g` removes it', () => {
    const prefix = mkdtempSync(join(tmpdir(), 'cp-readme-prefix-'))
    try {
      const env = { ...process.env, npm_config_prefix: prefix, npm_config_update_notifier: 'false', PATH: `${join(prefix, 'bin')}:${process.env['PATH'] ?? ''}` }
      const result = spawnSync('sh', ['-c', agentBlock('npm link')], { cwd: repoRoot, env, encoding: 'utf8', timeout: 120_000 })
      expect(result.stdout).toContain('0.1.0')
      expect(result.status).toBe(0)
      const removed = spawnSync('npm', ['rm', '-g', '@credproxy/cli'], { cwd: tmpdir(), env, encoding: 'utf8', timeout: 60_000 })
      expect(removed.status).toBe(0)
      expect(spawnSync('sh', ['-c', 'command -v credproxy'], { env: { PATH: join(prefix, 'bin') } }).status).not.toBe(0)
    } finally {
      rmSync(prefix, { recursive: true, force: true })
    }
  }, 150_000)

  test('the API call from inside (README command, local server) arrives with the granted key as its bearer token', async () => {
    const home = mkdtempSync(join(tmpdir(), 'cp-readme-agent-'))
    const cwd = mkdtempSync(join(tmpdir(), 'cp-readme-agent-cwd-'))
    const key = `sk-readme-${process.pid}-${Date.now()}`
    const seen: string[] = []
    const server = createServer((request, response) => {
      seen.push(request.headers.authorization ?? '')
      response.setHeader('content-type', 'application/json')
      response.end('{"object":"list","data":[]}')
    })
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done))
    const port = (server.address() as AddressInfo).port
    try {
      const env = { PATH: `${join(repoRoot, 'node_modules', '.bin')}:${process.env['PATH'] ?? ''}`, HOME: home, CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' }
      const set = spawnSync('credproxy', ['key', 'set', 'OPENAI_API_KEY'], { env, input: key, encoding: 'utf8' })
      expect(set.status).toBe(0)
      // The README's command as written, pointed at a local server instead of api.openai.com.
      const command = agentBlock('curl').replace('https://api.openai.com/v1/models', `http://127.0.0.1:${port}/v1/models`)
      const result = await new Promise<{ status: number | null; stdout: string; stderr: string }>((done) => {
        const child = spawn('sh', ['-c', command], { cwd, env })
        let stdout = ''
        let stderr = ''
        child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
        child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
        child.on('close', (status) => done({ status, stdout, stderr }))
      })
      expect(result.stderr).not.toContain(key)
      expect(result.stdout).toBe('{"object":"list","data":[]}')
      expect(result.status).toBe(0)
      expect(seen).toEqual([`Bearer ${key}`])
    } finally {
      server.close()
      rmSync(home, { recursive: true, force: true })
      rmSync(cwd, { recursive: true, force: true })
    }
  }, 60_000)
})
