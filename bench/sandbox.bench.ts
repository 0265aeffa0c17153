// `credproxy run -- true` overhead (broker start, bwrap start, teardown) beside a
// bare `bwrap ... true`. Spawns the built CLI: run `npm run build` first.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { fmtMs, summarize, timeIt } from './stats.js'

const RUNS = 20
const BIN = fileURLToPath(new URL('../packages/cli/bin/credproxy.js', import.meta.url))

function exec(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env, stdio: 'ignore' })
    child.once('error', reject)
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`${file} exited ${code}`))))
  })
}

async function sample(fn: () => Promise<void>): Promise<number[]> {
  await fn() // warm-up
  const samples: number[] = []
  for (let i = 0; i < RUNS; i++) samples.push(await timeIt(fn))
  return samples
}

export async function run(): Promise<void> {
  const home = mkdtempSync(join(tmpdir(), 'cp-bench-sandbox-'))
  const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/root', CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' }
  try {
    const bare = ['--unshare-all', '--die-with-parent', '--new-session', '--ro-bind', '/', '/', '--tmpfs', '/tmp', '--proc', '/proc', '--dev', '/dev', '--', 'true']
    const rows: Array<[string, number[]]> = [
      ['bwrap ... true (bare)', await sample(() => exec('bwrap', bare, env))],
      ['node -e 0 (node start)', await sample(() => exec(process.execPath, ['-e', '0'], env))],
      ['credproxy run --sandbox bwrap -- true', await sample(() => exec(process.execPath, [BIN, 'run', '--sandbox', 'bwrap', '--', 'true'], env))],
      ['credproxy run --sandbox none -- true', await sample(() => exec(process.execPath, [BIN, 'run', '--sandbox', 'none', '--', 'true'], env))],
    ]
    console.log(`| what | p50 | p99 | mean | n |\n|---|---|---|---|---|`)
    for (const [name, samples] of rows) {
      const s = summarize(samples)
      console.log(`| ${name} | ${fmtMs(s.p50)} | ${fmtMs(s.p99)} | ${fmtMs(s.mean)} | ${s.n} |`)
    }
  } finally {
    rmSync(home, { recursive: true, force: true })
  }
}
