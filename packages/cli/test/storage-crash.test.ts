// Crash safety and contention across real processes running the built stores
// (run `npm run build` first): SIGKILL mid-write, and 4 writers on one credential.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { openHostStores } from '../src/storage/index.js'

const WRITER = fileURLToPath(new URL('./fixtures/storage-writer.mjs', import.meta.url))
const TOTAL_WRITES = 200
/** Kills mid-write; the kernel frees a killed writer's write lock (flock) at once. */
const KILLS = 3
/** The kill timer starts at the child's first returned write, so it lands mid-run. */
const MAX_KILL_DELAY_MS = 40
const PROCESSES = 4
const UPDATES_PER_PROCESS = 250

function startWriter(env: NodeJS.ProcessEnv, args: string[]): { child: ChildProcess; lines: AsyncIterableIterator<string>; stderr: string[] } {
  const child = spawn(process.execPath, [WRITER, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  const stderr: string[] = []
  child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk.toString()))
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]()
  return { child, lines, stderr }
}

function exited(child: ChildProcess): Promise<number | string> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode)
  if (child.signalCode !== null) return Promise.resolve(child.signalCode)
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)))
}

describe('host storage across processes (file backend)', () => {
  let home: string
  let env: NodeJS.ProcessEnv
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'credproxy-crash-'))
    env = { ...process.env, CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' }
  })
  afterEach(async () => {
    await rm(home, { recursive: true, force: true })
  })

  test(
    'SIGKILL at random moments during 200 writes never leaves a broken or older credential',
    async () => {
      let lastReturned = -1
      let kills = 0
      while (lastReturned < TOTAL_WRITES - 1) {
        const { child, lines, stderr } = startWriter(env, ['crash', String(lastReturned + 1), String(TOTAL_WRITES)])
        const killing = kills < KILLS
        let armed = false
        const reading = (async () => {
          for await (const line of { [Symbol.asyncIterator]: () => lines }) {
            if (line === 'ready') continue
            lastReturned = Number(line)
            if (killing && !armed) {
              armed = true
              setTimeout(() => child.kill('SIGKILL'), Math.random() * MAX_KILL_DELAY_MS)
            }
          }
        })()
        const status = await exited(child)
        await reading
        if (killing) kills += 1
        else expect(status, stderr.join('')).toBe(0)
        // What a fresh reader sees: decryptable, and at least the last write that returned.
        const stores = await openHostStores({ env, log: () => {} })
        const stored = await stores.tokens.getToken('crashy')
        if (lastReturned >= 0) {
          expect(stored).not.toBeNull()
          const seq = stored?.['seq'] as number
          expect(seq).toBeGreaterThanOrEqual(lastReturned)
          // At most the one write that was in flight when the process died.
          expect(seq).toBeLessThanOrEqual(lastReturned + 1)
          expect(stored?.access_token.startsWith(`access-${seq}-`)).toBe(true)
          lastReturned = seq
        }
      }
      expect(kills).toBe(KILLS)
      expect((await openHostStores({ env, log: () => {} }).then((s) => s.tokens.getToken('crashy')))?.['seq']).toBe(
        TOTAL_WRITES - 1,
      )
      // Temp files of killed writers are never listed as credentials.
      const names = (await readdir(join(home, 'data', 'credentials'))).filter((n) => !n.startsWith('.tmp-'))
      expect(names).toEqual(['token+crashy+default.enc'])
    },
    120_000,
  )

  test(
    '4 processes x 250 read-modify-write updates of one credential apply all 1,000',
    async () => {
      const writers = Array.from({ length: PROCESSES }, () => startWriter(env, ['contend', String(UPDATES_PER_PROCESS)]))
      const results = await Promise.all(
        writers.map(async ({ child, lines, stderr }) => {
          const seen: string[] = []
          for await (const line of { [Symbol.asyncIterator]: () => lines }) seen.push(line)
          return { status: await exited(child), seen, stderr: stderr.join('') }
        }),
      )
      for (const result of results) expect(result).toEqual({ status: 0, seen: ['ready', 'done'], stderr: '' })
      const stores = await openHostStores({ env, log: () => {} })
      expect((await stores.tokens.getToken('shared'))?.['count']).toBe(PROCESSES * UPDATES_PER_PROCESS)
    },
    120_000,
  )
})
