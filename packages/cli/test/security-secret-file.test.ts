// `credproxy serve --secret-file PATH`: the secret goes to a NEW 0600 file, never over
// an existing file or through a planted symlink.
import { mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateSessionSecret, parseSessionSecret } from '@credproxy/core'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { UsageError } from '../src/errors.js'
import { writeSessionSecretFile } from '../src/broker/session-secret-file.js'

let dir: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cp-secret-'))
})
afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('writeSessionSecretFile', () => {
  test('writes the secret as 64 hex characters to a new 0600 file that core reads back', async () => {
    const secret = generateSessionSecret()
    const path = join(dir, 'secret')
    await writeSessionSecretFile(path, secret)
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    const text = await readFile(path, 'utf8')
    expect(text).toMatch(/^[0-9a-f]{64}\n$/)
    expect(parseSessionSecret(text).equals(secret)).toBe(true)
  })

  test('refuses to overwrite an existing file and leaves it as it was', async () => {
    const path = join(dir, 'secret')
    await writeFile(path, 'keep me')
    await expect(writeSessionSecretFile(path, generateSessionSecret())).rejects.toBeInstanceOf(UsageError)
    expect(await readFile(path, 'utf8')).toBe('keep me')
  })

  test('refuses to write through a symlink planted at the path', async () => {
    const target = join(dir, 'target')
    await writeFile(target, '')
    await symlink(target, join(dir, 'secret'))
    await expect(writeSessionSecretFile(join(dir, 'secret'), generateSessionSecret())).rejects.toBeInstanceOf(UsageError)
    expect(await readFile(target, 'utf8')).toBe('')
  })

  test('refuses a secret of the wrong length', async () => {
    await expect(writeSessionSecretFile(join(dir, 'secret'), Buffer.alloc(16))).rejects.toThrow('32 bytes')
  })
})
