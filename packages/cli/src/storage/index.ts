// openHostStores(): the host token and API key stores, on the backend saved on first
// use (storage.json: the OS keyring when one was reachable, else encrypted files);
// CREDPROXY_KEYRING=off|required overrides it.
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { resolvePaths, type CredproxyPaths } from '../paths.js'
import { TEMP_PREFIX } from './atomic-write.js'
import { backendChoicePath, keyringMode, keyringService, readBackendChoice, saveBackendChoice } from './backend-selection.js'
import { CREDENTIALS_DIR, FileBackend, RECORD_FILE_SUFFIX } from './file-backend.js'
import { HostKeyStorageImpl, HostTokenStoreImpl } from './host-stores.js'
import { KEYRING_HINT, KeyringClient } from './keyring-client.js'
import { KeyringBackend } from './keyring-backend.js'
import { LockDirectory } from './locks.js'
import { parseRecordFileBase, recordId, type RecordBackend } from './record-backend.js'
import type { HostStores } from './types.js'
import { UsageStats } from './usage-stats.js'
import { logLineTo } from '../escape.js'
import { CredproxyError } from '../errors.js'

export type { BackendName, HostStores, HostTokenStore } from './types.js'
export { keyringMode, keyringService, KEYRING_MODES, type KeyringMode, readBackendChoice, backendChoicePath, BACKEND_CHOICE_FILE } from './backend-selection.js'
export { parseToken, MAX_KEY_VALUE_BYTES, MAX_TOKEN_JSON_BYTES } from './host-stores.js'
export { LockLostError, LockTimeoutError, WRITE_LOCK_WAIT_MS, REFRESH_LOCK_WAIT_MS, type HeldLock } from './locks.js'
export { DEFAULT_KEYRING_SERVICE } from './keyring-client.js'

export interface OpenHostStoresOptions {
  env?: NodeJS.ProcessEnv
  paths?: CredproxyPaths
  /** Where the one fallback notice and lock warnings go (default: stderr). */
  log?: (line: string) => void
}

export async function openHostStores(options: OpenHostStoresOptions = {}): Promise<HostStores> {
  const env = options.env ?? process.env
  const paths = options.paths ?? resolvePaths(env)
  const log = options.log ?? logLineTo(process.stderr)
  const locks = await LockDirectory.open(paths.stateDir, log)
  const { backend } = await selectBackend(env, paths, locks, log)
  return {
    tokens: new HostTokenStoreImpl(backend, locks, new UsageStats(paths.stateDir, locks, log), log),
    keys: new HostKeyStorageImpl(backend, locks),
    backend: backend.name,
  }
}

export interface SelectedBackend {
  backend: RecordBackend
  /** Why this backend, for `credproxy doctor`. */
  reason: string
}

/**
 * The backend for this command. The choice is saved on first use (storage.json) so
 * credentials never move silently when a keyring comes or goes; CREDPROXY_KEYRING
 * off/required override it. Notices are logged once (when the choice is made), except
 * the one about credentials the other backend hides, which names the fix.
 */
export async function selectBackend(
  env: NodeJS.ProcessEnv,
  paths: CredproxyPaths,
  locks: LockDirectory,
  log: (line: string) => void,
): Promise<SelectedBackend> {
  const mode = keyringMode(env)
  const service = keyringService(env)
  const file = backendChoicePath(paths.configDir)
  const choice = await readBackendChoice(paths.configDir)
  if (mode === 'off') {
    if (choice === null) await saveBackendChoice(paths.configDir, 'file')
    const reason =
      choice?.backend === 'keyring' ? `CREDPROXY_KEYRING=off (overrides the keyring saved in ${file})` : 'CREDPROXY_KEYRING=off'
    return { backend: await FileBackend.open(paths.dataDir), reason }
  }
  if (mode === 'required' || choice?.backend === 'keyring') {
    const keyring = new KeyringClient(service)
    const failure = await keyring.probe()
    if (failure !== null) {
      if (mode === 'required') {
        throw new CredproxyError('UNAVAILABLE', `CREDPROXY_KEYRING=required but no OS keyring is reachable (${failure})`, { hint: KEYRING_HINT })
      }
      // Falling back to files here is what made stored keys vanish: say so instead.
      throw new CredproxyError(
        'UNAVAILABLE',
        `your credentials are in the OS keyring (saved choice in ${file}), but no keyring is reachable (${failure})`,
        { hint: `${KEYRING_HINT} To use the encrypted files for this one command, set CREDPROXY_KEYRING=off (they do not hold the keyring's credentials).` },
      )
    }
    if (choice === null) await saveBackendChoice(paths.configDir, 'keyring')
    const hidden = await fileRecordIds(paths.dataDir)
    if (hidden.length > 0) {
      log(
        `credproxy: ${hidden.length} credential(s) are in encrypted files in ${paths.dataDir}, not in the keyring in use, so they are not visible: ` +
          'move them with `credproxy key migrate --to keyring`.',
      )
    }
    return { backend: new KeyringBackend(keyring, locks), reason: mode === 'required' ? 'CREDPROXY_KEYRING=required' : `saved in ${file}` }
  }
  if (choice?.backend === 'file') {
    // No keyring probe: the choice was made (and announced) once.
    return { backend: await FileBackend.open(paths.dataDir), reason: `saved in ${file}` }
  }
  // First use: a reachable keyring wins, unless the files already hold credentials.
  const keyring = new KeyringClient(service)
  const failure = await keyring.probe()
  const inFiles = await fileRecordIds(paths.dataDir)
  if (failure === null && inFiles.length === 0) {
    await saveBackendChoice(paths.configDir, 'keyring')
    return { backend: new KeyringBackend(keyring, locks), reason: `an OS keyring was reachable on first use (saved in ${file})` }
  }
  await saveBackendChoice(paths.configDir, 'file')
  if (failure === null) {
    log(
      `credproxy: ${inFiles.length} credential(s) are in encrypted files in ${paths.dataDir}; keeping them there (saved in ${file}). ` +
        'An OS keyring is reachable: move them with `credproxy key migrate --to keyring`.',
    )
    return { backend: await FileBackend.open(paths.dataDir), reason: `the files held credentials on first use (saved in ${file})` }
  }
  log(
    `credproxy: no OS keyring reachable (${failure}); using encrypted files in ${paths.dataDir} from now on ` +
      `(saved in ${file}; this notice is shown once). To switch later: \`credproxy key migrate --to keyring\`.`,
  )
  return { backend: await FileBackend.open(paths.dataDir), reason: `no OS keyring was reachable on first use (saved in ${file})` }
}

/** Record ids of the encrypted files, from their names alone (no key derivation, no keyring). */
export async function fileRecordIds(dataDir: string): Promise<string[]> {
  let entries: string[]
  try {
    entries = await readdir(join(dataDir, CREDENTIALS_DIR))
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw error
  }
  return entries.flatMap((entry) => {
    if (entry.startsWith(TEMP_PREFIX) || !entry.endsWith(RECORD_FILE_SUFFIX)) return []
    const ref = parseRecordFileBase(entry.slice(0, -RECORD_FILE_SUFFIX.length))
    return ref === null ? [] : [recordId(ref)]
  }).sort()
}
