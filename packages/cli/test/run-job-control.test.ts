// Ctrl-Z in `credproxy run --sandbox bwrap -- bash` on a real terminal (tmux): the
// sandbox stops with credproxy, the host shell gets the terminal alone, and `fg`
// resumes both. Needs tmux (scripts/install-system-deps.sh) and `npm run build`.
import { spawnSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, test } from 'vitest'
import { makeCliHome, removeCliHomes } from './helpers/cli-runner.js'

const BIN = fileURLToPath(new URL('../bin/credproxy.js', import.meta.url))
const hasTmux = spawnSync('tmux', ['-V'], { stdio: 'ignore' }).status === 0
const SESSION = `cp-jobctl-${process.pid}`

afterEach(() => {
  spawnSync('tmux', ['kill-session', '-t', SESSION], { stdio: 'ignore' })
  removeCliHomes()
})

function tmux(...args: string[]): string {
  const result = spawnSync('tmux', args, { encoding: 'utf8' })
  if (result.status !== 0) throw new Error(`tmux ${args.join(' ')}: ${result.stderr}`)
  return result.stdout
}

const screen = (): string => tmux('capture-pane', '-p', '-t', SESSION)

async function waitFor(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 200; i += 1) {
    if (check()) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`timed out waiting for ${what}; screen:\n${screen()}`)
}

/** pid -> [ppid, state] for every process. */
function processTable(): Map<number, { ppid: number; state: string; comm: string }> {
  const table = new Map<number, { ppid: number; state: string; comm: string }>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const close = stat.lastIndexOf(')')
      const comm = stat.slice(stat.indexOf('(') + 1, close)
      const [state, ppid] = stat.slice(close + 2).split(' ')
      table.set(Number(entry), { ppid: Number(ppid), state: state ?? '?', comm })
    } catch {
      // Exited while we looked.
    }
  }
  return table
}

/** The states of the `bash` processes below the credproxy started by the pane's shell. */
function sandboxShellStates(panePid: number): string[] {
  const table = processTable()
  const below = (root: number): number[] => [...table].filter(([, p]) => p.ppid === root).flatMap(([pid]) => [pid, ...below(pid)])
  const credproxy = [...table].find(([, p]) => p.ppid === panePid && p.comm.startsWith('node'))?.[0]
  if (credproxy === undefined) return []
  return below(credproxy)
    .map((pid) => table.get(pid))
    .filter((p) => p?.comm === 'bash')
    .map((p) => p?.state ?? '?')
}

describe.runIf(process.platform === 'linux' && hasTmux)('job control of credproxy run on a terminal', () => {
  test('Ctrl-Z stops the sandbox with credproxy and gives the host shell the terminal; fg resumes both', async () => {
    const { env, cwd } = await makeCliHome('cp-jobctl-')
    const vars = Object.entries({ ...env, TERM: 'xterm' }).map(([k, v]) => `${k}=${v ?? ''}`)
    tmux('new-session', '-d', '-s', SESSION, '-x', '160', '-y', '40', '-c', cwd, 'env', '-i', ...vars, 'bash', '--norc', '--noprofile')
    const panePid = Number(tmux('display', '-p', '-t', SESSION, '#{pane_pid}').trim())
    tmux('send-keys', '-t', SESSION, `${process.execPath} ${BIN} run --sandbox bwrap -- bash --norc --noprofile -i`, 'Enter')
    await waitFor('the shell inside', () => sandboxShellStates(panePid).length > 0)
    tmux('send-keys', '-t', SESSION, 'echo INSIDE_$((1+1))', 'Enter')
    await waitFor('the inside shell to answer', () => screen().includes('INSIDE_2'))

    tmux('send-keys', '-t', SESSION, 'C-z')
    await waitFor('the host shell to report the stopped job', () => screen().includes('Stopped'))
    const allStopped = (): boolean => {
      const states = sandboxShellStates(panePid)
      return states.length > 0 && states.every((state) => state === 'T')
    }
    await waitFor('the sandbox shell to stop', allStopped)
    tmux('send-keys', '-t', SESSION, 'echo HOST_$((2+2))', 'Enter')
    await waitFor('the host shell to answer', () => screen().includes('HOST_4'))
    // Only the host shell read that line: the stopped one inside did not echo it back.
    expect(screen().split('\n').filter((line) => line.includes('echo HOST_'))).toHaveLength(1)
    expect(allStopped()).toBe(true)

    tmux('send-keys', '-t', SESSION, 'fg', 'Enter')
    await waitFor('the sandbox shell to run again', () => {
      const states = sandboxShellStates(panePid)
      return states.length > 0 && states.every((state) => state !== 'T')
    })
    tmux('send-keys', '-t', SESSION, 'echo AGAIN_$((3+3))', 'Enter')
    await waitFor('the inside shell to answer after fg', () => screen().includes('AGAIN_6'))
    tmux('send-keys', '-t', SESSION, 'exit', 'Enter')
    await waitFor('credproxy to exit', () => sandboxShellStates(panePid).length === 0)
  }, 60_000)
})
