// `credproxy key migrate --to keyring|file`: move every credential between the
// backends without a moment where it exists in neither. Copy each record, read it
// back from the target, and only when every copy is verified save the new choice and
// delete the sources. An interruption at any point leaves one or two copies, never none.
import type { CredproxyPaths } from '../paths.js'
import { backendChoicePath, keyringService, saveBackendChoice } from './backend-selection.js'
import { FileBackend } from './file-backend.js'
import { withWriteLock } from './host-stores.js'
import { KEYRING_HINT, KeyringClient } from './keyring-client.js'
import { KeyringBackend } from './keyring-backend.js'
import type { LockDirectory } from './locks.js'
import { recordId, type RecordBackend, type RecordRef } from './record-backend.js'
import type { BackendName } from './types.js'
import { CredproxyError } from '../errors.js'

export interface MigrateOptions {
  env: NodeJS.ProcessEnv
  paths: CredproxyPaths
  locks: LockDirectory
  to: BackendName
  /** One line per step, naming records (never values). */
  progress: (line: string) => void
}

export interface MigrateResult {
  /** Record ids now only in the target. */
  moved: string[]
  /** Copied and verified, but the source copy is still there (changed meanwhile, or its delete failed). */
  kept: string[]
}

async function openKeyring(env: NodeJS.ProcessEnv, locks: LockDirectory): Promise<KeyringBackend> {
  const keyring = new KeyringClient(keyringService(env))
  const failure = await keyring.probe()
  if (failure !== null) throw new CredproxyError('UNAVAILABLE', `no OS keyring is reachable (${failure}); nothing was moved`, { hint: KEYRING_HINT })
  return new KeyringBackend(keyring, locks)
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

export async function migrateCredentials(options: MigrateOptions): Promise<MigrateResult> {
  const { env, paths, locks, to, progress } = options
  const keyring = await openKeyring(env, locks)
  const files = await FileBackend.open(paths.dataDir)
  const [source, target]: [RecordBackend, RecordBackend] = to === 'keyring' ? [files, keyring] : [keyring, files]
  const refs: RecordRef[] = [...(await source.list('token')), ...(await source.list('key'))]

  // Phase 1: copy and verify. Nothing is deleted, and the saved choice is unchanged, until every copy reads back.
  const copied: { ref: RecordRef; value: string }[] = []
  const failures: string[] = []
  for (const ref of refs) {
    const id = recordId(ref)
    try {
      const value = await withWriteLock(locks, ref, async () => {
        const current = await source.read(ref)
        if (current === null) return null
        const existing = await target.read(ref)
        if (existing !== null && existing !== current) {
          throw new Error(`${target.describe(ref)} already holds a different value; left both as they are`)
        }
        if (existing === null) await target.write(ref, current)
        if ((await target.read(ref)) !== current) throw new Error(`${target.describe(ref)} did not read back what was written`)
        return current
      })
      if (value === null) continue
      copied.push({ ref, value })
      progress(`copied ${id} to the ${to === 'keyring' ? 'keyring' : 'encrypted files'} (verified)`)
    } catch (error) {
      failures.push(`${id}: ${describeError(error)}`)
      progress(`could not copy ${id}: ${describeError(error)}`)
    }
  }
  if (failures.length > 0) {
    throw new CredproxyError(
      'FAILED',
      `${failures.length} of ${refs.length} credential(s) could not be copied (${failures.join('; ')}); nothing was deleted and the backend in use is unchanged`,
      { hint: 'Fix the cause and run `credproxy key migrate` again; credentials already copied are recognised and not duplicated.' },
    )
  }

  // Every credential now exists in both places: switching first means no command ever sees neither.
  await saveBackendChoice(paths.configDir, to)
  progress(`saved the choice '${to}' in ${backendChoicePath(paths.configDir)}`)

  // Phase 2: delete the sources, each only if it still holds the value that was copied.
  const result: MigrateResult = { moved: [], kept: [] }
  for (const { ref, value } of copied) {
    const id = recordId(ref)
    try {
      const removed = await withWriteLock(locks, ref, async () => {
        if ((await source.read(ref)) !== value) return false
        await source.remove(ref)
        return true
      })
      if (removed) result.moved.push(id)
      else result.kept.push(id)
    } catch (error) {
      progress(`copied ${id}, but could not delete the old copy: ${describeError(error)}`)
      result.kept.push(id)
    }
  }
  return result
}
