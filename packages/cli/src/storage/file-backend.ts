// Encrypted file backend: one AES-256-GCM envelope per credential in
// <dataDir>/credentials. Format and guarantees: dev-docs/storage.md.
import type { BigIntStats } from 'node:fs'
import { lstat, readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { ensurePrivateDir, readPrivateFile } from '../fs-private.js'
import { syncDir, TEMP_PREFIX, writeFileAtomic } from './atomic-write.js'
import { CredentialCipher } from './envelope.js'
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
import { CredproxyError } from '../errors.js'

export const CREDENTIALS_DIR = 'credentials'
export const RECORD_FILE_SUFFIX = '.enc'
/** Temp files older than this were left by a crashed writer and are removed on open. */
export const STALE_TEMP_FILE_AGE_MS = 60_000
/** Decrypted records kept per backend (one per credential file); past it the cache starts over. */
export const PLAINTEXT_CACHE_ENTRIES = 256

/**
 * What changes whenever the file's bytes, owner or mode may have: an atomic rename
 * gives a new inode, an in-place write a new size or mtime, chmod/chown a new ctime.
 */
function fileIdentity(info: BigIntStats): string {
  return `${info.dev}:${info.ino}:${info.size}:${info.mtimeNs}:${info.ctimeNs}`
}

export class FileBackend implements RecordBackend {
  readonly name = 'file' as const
  /** path -> the plaintext of the file version named by identity: decrypt once per version, not per read. */
  readonly #plain = new Map<string, { identity: string; value: string }>()

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
    let identity: string
    try {
      identity = fileIdentity(await lstat(path, { bigint: true }))
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
      this.#plain.delete(path)
      return null
    }
    const cached = this.#plain.get(path)
    if (cached?.identity === identity) return cached.value
    const text = await readPrivateFile(path)
    if (text === null) return null
    try {
      const { plaintext } = await this.cipher.open(recordId(ref), text)
      // Keyed by the identity seen before reading: if the file changed in between, the
      // next read sees a different identity and reads again (never an older value).
      if (this.#plain.size >= PLAINTEXT_CACHE_ENTRIES) this.#plain.clear()
      this.#plain.set(path, { identity, value: plaintext })
      return plaintext
    } catch (error) {
      if (!(error instanceof CredproxyError && error.code === 'ENVELOPE_INVALID')) throw error
      throw new CredproxyError(
        'FAILED',
        `${path} ${error.message}; refusing to treat it as empty`,
        { hint: 'Restore the file from a backup, or move it away and store the credential again.' },
      )
    }
  }

  async write(ref: RecordRef, value: string): Promise<void> {
    const path = this.describe(ref)
    this.#plain.delete(path)
    await writeFileAtomic(path, this.cipher.seal(recordId(ref), value))
  }

  async remove(ref: RecordRef): Promise<boolean> {
    this.#plain.delete(this.describe(ref))
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
