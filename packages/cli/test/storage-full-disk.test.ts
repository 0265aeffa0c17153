// Opening a new store on a full disk fails with the disk's error and leaves no temp
// file behind (the machine secret's temp file in the data dir included), and a temp
// file a crash left in the data dir is cleaned up by the next open.
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdir, mkdtemp, open, readdir, rm, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { resolvePaths } from '../src/paths.js'
import { openHostStores } from '../src/storage/index.js'

const STORAGE = fileURLToPath(new URL('../dist/storage/index.js', import.meta.url))

function canMountTmpfs(): boolean {
  if (process.getuid?.() !== 0) return false
  const probe = spawnSync('sh', ['-c', 'd=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs "$d" && umount "$d"; rc=$?; rmdir "$d"; exit $rc'])
  return probe.status === 0
}

async function tempFilesIn(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).filter((name) => name.startsWith('.tmp-'))
}

describe('a full disk leaves no temp file behind', () => {
  let home: string
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'credproxy-full-'))
  })
  afterEach(async () => {
    spawnSync('umount', [home])
    await rm(home, { recursive: true, force: true })
  })

  test.skipIf(!canMountTmpfs())('ENOSPC on a tiny tmpfs: the open fails, no .tmp-machine-secret.* stays in data/', async () => {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', home])
    // Fill every block; directories (inodes) can still be made.
    const filler = await open(join(home, 'filler'), 'w')
    try {
      for (;;) await filler.write(Buffer.alloc(4096))
    } catch (error) {
      expect((error as NodeJS.ErrnoException).code).toBe('ENOSPC')
    } finally {
      await filler.close()
    }
    const env = { CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' }
    await expect(openHostStores({ env, log: () => undefined })).rejects.toMatchObject({ code: 'ENOSPC' })
    expect(await tempFilesIn(resolvePaths(env).dataDir)).toEqual([])
  })

  test('a write failing mid-way (file size limit, EFBIG) leaves no temp file either', () => {
    const env = { ...process.env, CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' }
    const script = `import(${JSON.stringify(STORAGE)}).then((m) => m.openHostStores({ env: process.env, log: () => {} })).then(() => console.log('opened'), (e) => console.log(e.code))`
    const result = spawnSync('prlimit', ['--fsize=16', process.execPath, '-e', script], { env, encoding: 'utf8' })
    expect(result.stdout.trim()).toBe('EFBIG')
    return tempFilesIn(resolvePaths(env).dataDir).then((left) => expect(left).toEqual([]))
  })

  test('a stale temp file in the data dir (a crash while creating the machine secret) is removed by the next open', async () => {
    const env = { CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' }
    const dataDir = resolvePaths(env).dataDir
    await mkdir(dataDir, { recursive: true, mode: 0o700 })
    const stale = join(dataDir, '.tmp-machine-secret.0123456789ab')
    await writeFile(stale, '', { mode: 0o600 })
    const old = new Date(Date.now() - 10 * 60_000)
    await utimes(stale, old, old)
    const stores = await openHostStores({ env, log: () => undefined })
    await stores.tokens.close?.()
    expect(await tempFilesIn(dataDir)).toEqual([])
  })
})
