// The behavioural suite on the encrypted file backend, plus what only files can
// show: no plaintext on disk, modes, corrupt and swapped files.
import { spawnSync } from 'node:child_process'
import { chmod, chown, copyFile, cp, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest'
import { withRefreshLock } from '../src/oauth/refresh-lock.js'
import { CredentialCipher } from '../src/storage/envelope.js'
import { openHostStores } from '../src/storage/index.js'
import type { HostStores } from '../src/storage/types.js'
import { storageSuite, token } from './storage-suite.js'

storageSuite('file', () => ({ CREDPROXY_KEYRING: 'off' }))

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [dir]
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...(await walk(path)))
    else out.push(path)
  }
  return out
}

describe('encrypted file backend on disk', () => {
  let home: string
  let env: NodeJS.ProcessEnv
  let stores: HostStores
  const open = () => openHostStores({ env, log: () => {} })
  const tokenFile = (provider: string, bucket = 'default') => join(home, 'data', 'credentials', `token+${provider}+${bucket}.enc`)

  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'credproxy-file-'))
    env = { CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' }
    stores = await open()
  })
  afterEach(async () => {
    await rm(home, { recursive: true, force: true })
  })

  test('no stored secret appears in plaintext anywhere under the store, files 0600, dirs 0700', async () => {
    const secrets = ['sk-PLAINTEXT-api-key-7f3a', 'ACCESS-plaintext-9c1d', 'REFRESH-plaintext-2b8e']
    await stores.keys.saveKey('OPENAI_API_KEY', secrets[0] ?? '')
    await stores.tokens.saveToken('anthropic', token({ access_token: secrets[1], refresh_token: secrets[2] }))
    await stores.tokens.recordUsage('anthropic', 'default')
    await stores.tokens.close?.() // usage counts reach usage.json on close
    await withRefreshLock(stores.tokens, 'anthropic', 'default', () => Promise.resolve())
    const paths = await walk(home)
    expect(paths.length).toBeGreaterThan(5)
    for (const path of paths) {
      const info = await stat(path)
      if (path === home) continue
      if (info.isDirectory()) {
        expect({ path, mode: info.mode & 0o777 }).toEqual({ path, mode: 0o700 })
        continue
      }
      expect({ path, mode: info.mode & 0o777 }).toEqual({ path, mode: 0o600 })
      const bytes = await readFile(path)
      for (const secret of secrets) {
        expect(bytes.includes(secret), `${secret} in ${path}`).toBe(false)
        expect(bytes.includes(Buffer.from(secret).toString('base64').slice(0, 16)), `base64 of secret in ${path}`).toBe(false)
      }
    }
  })

  test('wider permissions on the store are repaired', async () => {
    await stores.tokens.saveToken('p', token())
    await chmod(tokenFile('p'), 0o644)
    await chmod(join(home, 'data', 'credentials'), 0o755)
    await chmod(join(home, 'data', 'machine-secret.json'), 0o640)
    const reopened = await open()
    expect(await reopened.tokens.getToken('p')).toEqual(token())
    expect((await stat(tokenFile('p'))).mode & 0o777).toBe(0o600)
    expect((await stat(join(home, 'data', 'credentials'))).mode & 0o777).toBe(0o700)
    expect((await stat(join(home, 'data', 'machine-secret.json'))).mode & 0o777).toBe(0o600)
  })

  test.runIf(process.getuid?.() === 0)('a credential file owned by another user is refused, naming the path', async () => {
    await stores.tokens.saveToken('p', token())
    await chown(tokenFile('p'), 4242, 4242)
    await expect(stores.tokens.getToken('p')).rejects.toThrow(tokenFile('p'))
  })

  test('a corrupt file is reported with its path, never read as empty nor overwritten by an update', async () => {
    await stores.tokens.saveToken('p', token())
    const garbage = '{"format":"credproxy-secret","version":1,"oops":true}\n'
    await writeFile(tokenFile('p'), garbage)
    await expect(stores.tokens.getToken('p')).rejects.toThrow(tokenFile('p'))
    await expect(stores.tokens.updateToken('p', 'default', () => token())).rejects.toThrow(tokenFile('p'))
    expect(await readFile(tokenFile('p'), 'utf8')).toBe(garbage)
    // A flipped ciphertext byte fails authentication the same way.
    await stores.tokens.saveToken('q', token())
    const text = await readFile(tokenFile('q'), 'utf8')
    const envelope = JSON.parse(text) as { ciphertext: string }
    const bytes = Buffer.from(envelope.ciphertext, 'base64')
    bytes[0] = (bytes[0] ?? 0) ^ 1
    await writeFile(tokenFile('q'), JSON.stringify({ ...envelope, ciphertext: bytes.toString('base64') }))
    await expect(stores.tokens.getToken('q')).rejects.toThrow(/failed to decrypt/)
  })

  test('scrypt parameters scrypt refuses are reported with the path, like any corrupt file', async () => {
    await stores.tokens.saveToken('p', token())
    const envelope = JSON.parse(await readFile(tokenFile('p'), 'utf8')) as { kdf: Record<string, unknown> }
    // A version 1 (scrypt) envelope within the schema bounds, but not a power of two / past the scrypt memory cap.
    for (const kdf of [{ N: 3 }, { N: 2 ** 20, r: 32 }]) {
      const crafted = JSON.stringify({ ...envelope, version: 1, kdf: { name: 'scrypt', r: 8, p: 1, salt: envelope.kdf['salt'], ...kdf } })
      await writeFile(tokenFile('p'), crafted)
      await expect(stores.tokens.getToken('p')).rejects.toThrow(`${tokenFile('p')} has unusable scrypt parameters`)
      await expect(stores.tokens.updateToken('p', 'default', () => token())).rejects.toThrow(tokenFile('p'))
      expect(await readFile(tokenFile('p'), 'utf8')).toBe(crafted)
    }
  })

  test("a file swapped for another credential's file fails to decrypt", async () => {
    await stores.tokens.saveToken('victim', token({ access_token: 'victim' }))
    await stores.tokens.saveToken('attacker', token({ access_token: 'attacker' }))
    await copyFile(tokenFile('attacker'), tokenFile('victim'))
    await expect(stores.tokens.getToken('victim')).rejects.toThrow(/failed to decrypt/)
    await stores.keys.saveKey('A', 'a-value')
    await copyFile(tokenFile('attacker'), join(home, 'data', 'credentials', 'key+B.enc'))
    await expect(stores.keys.getKey('B')).rejects.toThrow(/key\+B\.enc/)
  })

  test('a lost machine secret makes reads fail loudly, not empty', async () => {
    await stores.keys.saveKey('K', 'value')
    await rm(join(home, 'data', 'machine-secret.json'))
    const reopened = await open()
    await expect(reopened.keys.getKey('K')).rejects.toThrow(/key\+K\.enc.*failed to decrypt/)
  })

  test('file names carry only the validated names', async () => {
    await stores.tokens.saveToken('gh@corp', token(), 'work.1')
    await stores.keys.saveKey('NPM_TOKEN', 'n')
    expect((await readdir(join(home, 'data', 'credentials'))).sort()).toEqual(['key+NPM_TOKEN.enc', 'token+gh@corp+work.1.enc'])
  })
})

describe('envelope versions and the decrypt cache', () => {
  const BIN = fileURLToPath(new URL('../bin/credproxy.js', import.meta.url))
  const FIXTURE = fileURLToPath(new URL('./fixtures/storage-v1/data', import.meta.url))
  let home: string
  let env: NodeJS.ProcessEnv
  const credentials = () => join(home, 'data', 'credentials')
  const envelopeOf = async (file: string) => JSON.parse(await readFile(join(credentials(), file), 'utf8')) as { version: number; kdf: { name: string } }

  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'credproxy-envelope-'))
    env = { CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' }
  })
  afterEach(async () => {
    vi.restoreAllMocks()
    await rm(home, { recursive: true, force: true })
  })

  test('a version 1 (scrypt) store written by the old code is read; each file becomes version 2 on its next write', async () => {
    // test/fixtures/storage-v1 was written by the scrypt code (commit a19a509) with saveKey and saveToken.
    await cp(FIXTURE, join(home, 'data'), { recursive: true })
    const stores = await openHostStores({ env, log: () => {} })
    expect(await stores.keys.getKey('OLD_KEY')).toBe('sk-written-by-scrypt-v1')
    expect(await stores.tokens.getToken('oldprov')).toMatchObject({ access_token: 'at-v1', refresh_token: 'rt-v1' })
    // Reading never rewrites.
    expect(await envelopeOf('key+OLD_KEY.enc')).toMatchObject({ version: 1, kdf: { name: 'scrypt' } })
    await stores.keys.saveKey('OLD_KEY', 'sk-rotated')
    expect(await envelopeOf('key+OLD_KEY.enc')).toMatchObject({ version: 2, kdf: { name: 'hkdf-sha256' } })
    expect(await envelopeOf('token+oldprov+default.enc')).toMatchObject({ version: 1 })
    await stores.tokens.updateToken('oldprov', 'default', (current) => ({ ...token(), refresh_token: current?.refresh_token ?? 'lost' }))
    expect(await envelopeOf('token+oldprov+default.enc')).toMatchObject({ version: 2, kdf: { name: 'hkdf-sha256' } })
    await stores.keys.saveKey('NEW_KEY', 'sk-new')
    expect(await envelopeOf('key+NEW_KEY.enc')).toMatchObject({ version: 2 })
    // A fresh process (no cache) reads the migrated files with the same machine secret.
    const again = await openHostStores({ env, log: () => {} })
    expect(await again.keys.getKey('OLD_KEY')).toBe('sk-rotated')
    expect(await again.tokens.getToken('oldprov')).toMatchObject({ refresh_token: 'rt-v1' })
    expect(await again.keys.getKey('NEW_KEY')).toBe('sk-new')
  })

  test('a new store never writes version 1', async () => {
    const stores = await openHostStores({ env, log: () => {} })
    await stores.keys.saveKey('K', 'v')
    await stores.tokens.saveToken('p', token())
    for (const file of await readdir(credentials())) expect(await envelopeOf(file)).toMatchObject({ version: 2, kdf: { name: 'hkdf-sha256' } })
  })

  test('each file version is decrypted once; a write by another process is read at once, never a stale value', async () => {
    const stores = await openHostStores({ env, log: () => {} })
    const opened = vi.spyOn(CredentialCipher.prototype, 'open')
    await stores.keys.saveKey('K', 'value-1')
    for (let i = 0; i < 10; i++) expect(await stores.keys.getKey('K')).toBe('value-1')
    expect(opened).toHaveBeenCalledTimes(1)
    const setByOther = (value: string) => {
      const result = spawnSync(process.execPath, [BIN, 'key', 'set', 'K'], { env: { ...process.env, ...env }, input: value, encoding: 'utf8' })
      expect(result.status, result.stderr).toBe(0)
    }
    setByOther('value-2')
    expect(await stores.keys.getKey('K')).toBe('value-2')
    // Same length, written right after: a new file (rename), so a new identity.
    setByOther('value-3')
    expect(await stores.keys.getKey('K')).toBe('value-3')
    expect(opened).toHaveBeenCalledTimes(3)
    // Written in place (same inode, same size): the mtime/ctime change is enough.
    const file = join(credentials(), 'key+K.enc')
    const sealed3 = await readFile(file)
    setByOther('value-4')
    expect(await stores.keys.getKey('K')).toBe('value-4')
    await writeFile(file, sealed3)
    expect(await stores.keys.getKey('K')).toBe('value-3')
    // Removed by another process: gone here too.
    expect(spawnSync(process.execPath, [BIN, 'key', 'delete', 'K'], { env: { ...process.env, ...env } }).status).toBe(0)
    expect(await stores.keys.getKey('K')).toBeNull()
  })
})
