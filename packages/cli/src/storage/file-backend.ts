// Encrypted file backend: one AES-256-GCM envelope per credential in
// <dataDir>/credentials. Format and guarantees: dev-docs/storage.md.
import { readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { CliError } from '../cli-io.js'
import { ensurePrivateDir, readPrivateFile } from '../fs-private.js'
import { syncDir, TEMP_PREFIX, writeFileAtomic } from './atomic-write.js'
import { CredentialCipher, EnvelopeError } from './envelope.js'
import type { KeyringClient } from './keyring-client.js'
import { loadMachineSecret } from './machine-secret.js'
import {
  parseRecordFileBase,
  recordFileBase,
  recordId,
  type RecordBackend,
  type RecordKind,
  type RecordRef,
} from './record-backend.js'

export const CREDENTIALS_DIR = 'credentials'
export const RECORD_FILE_SUFFIX = '.enc'
/** Temp files older than this were left by a crashed writer and are removed on open. */
export const STALE_TEMP_FILE_AGE_MS = 60_000
/** AAD prefix; the record id follows. Bumped with the envelope version. */
export const AAD_PREFIX = 'credproxy/v1/'

export class FileBackend implements RecordBackend {
  readonly name = 'file' as const

  private constructor(
    readonly dir: string,
    private readonly cipher: CredentialCipher,
  ) {}

  static async open(dataDir: string, options: { keyring?: KeyringClient } = {}): Promise<FileBackend> {
    await ensurePrivateDir(dataDir)
    const dir = join(dataDir, CREDENTIALS_DIR)
    await ensurePrivateDir(dir)
    // Temp files a crashed writer left behind: records in credentials/, the machine secret in the data dir.
    await removeStaleTempFiles(dir)
    await removeStaleTempFiles(dataDir)
    const machine = await loadMachineSecret(dataDir, options.keyring)
    return new FileBackend(dir, new CredentialCipher(machine.secret, machine.salt))
  }

  describe(ref: RecordRef): string {
    return join(this.dir, `${recordFileBase(ref)}${RECORD_FILE_SUFFIX}`)
  }

  async read(ref: RecordRef): Promise<string | null> {
    const path = this.describe(ref)
    const text = await readPrivateFile(path)
    if (text === null) return null
    try {
      return await this.cipher.open(AAD_PREFIX + recordId(ref), text)
    } catch (error) {
      if (!(error instanceof EnvelopeError)) throw error
      throw new CliError(
        `${path} ${error.message}; refusing to treat it as empty`,
        'Restore the file from a backup, or move it away and store the credential again.',
      )
    }
  }

  async write(ref: RecordRef, value: string): Promise<void> {
    const sealed = await this.cipher.seal(AAD_PREFIX + recordId(ref), value)
    await writeFileAtomic(this.describe(ref), sealed)
  }

  async remove(ref: RecordRef): Promise<boolean> {
    try {
      await rm(this.describe(ref))
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false
      throw error
    }
    await syncDir(this.dir)
    return true
  }

  async list(kind: RecordKind): Promise<RecordRef[]> {
    const refs: RecordRef[] = []
    for (const entry of await readdir(this.dir)) {
      if (entry.startsWith(TEMP_PREFIX) || !entry.endsWith(RECORD_FILE_SUFFIX)) continue
      const ref = parseRecordFileBase(entry.slice(0, -RECORD_FILE_SUFFIX.length))
      if (ref?.kind === kind) refs.push(ref)
    }
    return refs
  }
}

async function removeStaleTempFiles(dir: string): Promise<void> {
  const now = Date.now()
  for (const entry of await readdir(dir)) {
    if (!entry.startsWith(TEMP_PREFIX)) continue
    const path = join(dir, entry)
    try {
      if (now - (await stat(path)).mtimeMs > STALE_TEMP_FILE_AGE_MS) await rm(path, { force: true })
    } catch {
      // Another process cleaned it up first.
    }
  }
}
