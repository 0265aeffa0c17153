// Lock liveness is tied to the holder (flock): the lock of a process that died is free at
// once, the lock of a live one (even stopped) is not, and a lock whose file was replaced
// reports itself lost instead of letting its holder act on it.
import { spawn } from 'node:child_process'
import { mkdtemp, rm, unlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { LockDirectory, LockLostError } from '../src/storage/locks.js'

const HOLDER = fileURLToPath(new URL('./fixtures/lock-holder.mjs', import.meta.url))

describe('flock-based locks', () => {
  let stateDir: string
  beforeEach(async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'credproxy-locks-'))
  })
  afterEach(async () => {
    await rm(stateDir, { recursive: true, force: true })
  })

  test('a lock held by a stopped process is not taken; once the holder is killed it is free at once', async () => {
    const locks = await LockDirectory.open(stateDir, () => undefined)
    const child = spawn(process.execPath, [HOLDER, stateDir, 'refresh+token+p+default'], { stdio: ['ignore', 'pipe', 'inherit'] })
    const exited = new Promise((resolve) => child.once('exit', resolve))
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()))
    try {
      child.kill('SIGSTOP')
      expect(await locks.tryAcquire('refresh+token+p+default', { waitMs: 300 })).toBeNull()
    } finally {
      child.kill('SIGKILL')
      await exited
    }
    const started = Date.now()
    const lock = await locks.tryAcquire('refresh+token+p+default', { waitMs: 5_000 })
    expect(lock).not.toBeNull()
    // No stale timeout to wait out: the kernel dropped the dead holder's lock.
    expect(Date.now() - started).toBeLessThan(1_000)
    await lock?.release()
  })

  test('a lock whose file was removed is reported lost, and the new holder is not blocked', async () => {
    const locks = await LockDirectory.open(stateDir, () => undefined)
    const lock = await locks.tryAcquire('refresh+token+p+b', { waitMs: 100 })
    if (lock === null) throw new Error('lock not taken')
    await lock.assertHeld()
    await unlink(join(stateDir, 'locks', 'refresh+token+p+b.flock'))
    const other = await locks.tryAcquire('refresh+token+p+b', { waitMs: 100 })
    expect(other).not.toBeNull()
    await expect(lock.assertHeld('REFRESH_FAILED')).rejects.toBeInstanceOf(LockLostError)
    await lock.release()
    await expect(lock.assertHeld()).rejects.toBeInstanceOf(LockLostError)
    await other?.release()
  })
})
