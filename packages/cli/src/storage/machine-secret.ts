// The random machine secret the file backend's key is derived from. Kept in the
// keyring when the caller hands one in, else in a 0600 file in the data dir.
import { randomBytes } from 'node:crypto'
import { link, open, rm } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { PRIVATE_FILE_MODE, readPrivateFile } from '../fs-private.js'
import { syncDir, TEMP_PREFIX } from './atomic-write.js'
import { BASE64, extraKey, isJsonObject } from './json-checks.js'
import type { KeyringClient } from './keyring-client.js'
import { CredproxyError } from '../errors.js'
import { parseCheckedJsonFile } from '../json-file.js'

export const MACHINE_SECRET_FILE = 'machine-secret.json'
export const MACHINE_SECRET_ACCOUNT = 'machine-secret'
export const MACHINE_SECRET_BYTES = 32
export const KDF_SALT_BYTES = 16

/** base64 of exactly `bytes` bytes. */
function base64Of(value: unknown, bytes: number): value is string {
  return typeof value === 'string' && BASE64.test(value) && Buffer.from(value, 'base64').length === bytes
}

/** {version: 1, secret, salt} and nothing else. */
type MachineSecretJson = { version: 1; secret: string; salt: string }

function isMachineSecretJson(json: unknown): json is MachineSecretJson {
  return (
    isJsonObject(json) &&
    json['version'] === 1 &&
    base64Of(json['secret'], MACHINE_SECRET_BYTES) &&
    base64Of(json['salt'], KDF_SALT_BYTES) &&
    extraKey(json, ['version', 'secret', 'salt']) === undefined
  )
}

export interface MachineSecret {
  secret: Buffer
  salt: Buffer
  /** The file path or keyring entry it came from. */
  source: string
}

function fresh(): string {
  return JSON.stringify({
    version: 1,
    secret: randomBytes(MACHINE_SECRET_BYTES).toString('base64'),
    salt: randomBytes(KDF_SALT_BYTES).toString('base64'),
  })
}

function parse(text: string, source: string): MachineSecret {
  const data = parseCheckedJsonFile<MachineSecretJson>(text, source, (json) => (isMachineSecretJson(json) ? undefined : { field: '', issue: 'not a machine secret' }), {
    message: () => `${source} is not a valid credproxy machine secret; the encrypted credentials cannot be read without it`,
    hint: 'Restore it from a backup, or move the credproxy data directory away and store your credentials again.',
  })
  return { secret: Buffer.from(data.secret, 'base64'), salt: Buffer.from(data.salt, 'base64'), source }
}

/** An existing file wins, so credentials written before a keyring appeared stay readable. */
export async function loadMachineSecret(dataDir: string, keyring?: KeyringClient): Promise<MachineSecret> {
  const path = join(dataDir, MACHINE_SECRET_FILE)
  const existing = await readSecretFile(path)
  if (existing !== null) return existing
  if (keyring !== undefined) {
    const source = `keyring entry '${keyring.service}/${MACHINE_SECRET_ACCOUNT}'`
    const stored = await keyring.get(MACHINE_SECRET_ACCOUNT)
    if (stored !== null) return parse(stored, source)
    await keyring.set(MACHINE_SECRET_ACCOUNT, fresh())
    // Read again: a concurrent creator may have won; everyone uses what is stored now.
    return parse((await keyring.get(MACHINE_SECRET_ACCOUNT)) ?? '', source)
  }
  await createSecretFile(path)
  const created = await readSecretFile(path)
  if (created === null) throw new CredproxyError('FAILED', `${path} vanished while it was being created`, { hint: 'Run the command again.' })
  return created
}

async function readSecretFile(path: string): Promise<MachineSecret | null> {
  const text = await readPrivateFile(path)
  return text === null ? null : parse(text, path)
}

/** Write a complete temp file, then link() it into place: exactly one concurrent creator wins. */
async function createSecretFile(path: string): Promise<void> {
  const temp = join(dirname(path), `${TEMP_PREFIX}machine-secret.${randomBytes(6).toString('hex')}`)
  try {
    const handle = await open(temp, 'wx', PRIVATE_FILE_MODE)
    try {
      await handle.writeFile(fresh())
      await handle.sync()
    } finally {
      await handle.close()
    }
    try {
      await link(temp, path)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
  } finally {
    // Whatever failed (a full disk fails the write), the temp file never stays behind.
    await rm(temp, { force: true })
  }
  await syncDir(dirname(path))
}
