// openHostStores(): the host token and API key stores, on the OS keyring when one
// is reachable (CREDPROXY_KEYRING=auto|off|required), else on encrypted files.
import { CliError } from '../cli-io.js'
import { EXIT } from '../exit-codes.js'
import { resolvePaths, type CredproxyPaths } from '../paths.js'
import { keyringMode, keyringService } from './backend-selection.js'
import { FileBackend } from './file-backend.js'
import { HostKeyStorageImpl, HostTokenStoreImpl } from './host-stores.js'
import { KEYRING_HINT, KeyringClient } from './keyring-client.js'
import { KeyringBackend } from './keyring-backend.js'
import { LockDirectory } from './locks.js'
import type { RecordBackend } from './record-backend.js'
import type { HostStores } from './types.js'
import { UsageStats } from './usage-stats.js'
import { logLineTo } from '../escape.js'

export type { BackendName, HostStores, HostTokenStore } from './types.js'
export { keyringMode, keyringService, KEYRING_MODES, type KeyringMode } from './backend-selection.js'
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
  const mode = keyringMode(env)
  const service = keyringService(env)
  const locks = await LockDirectory.open(paths.stateDir, log)

  let backend: RecordBackend | undefined
  if (mode !== 'off') {
    const keyring = new KeyringClient(service)
    const failure = await keyring.probe()
    if (failure === null) {
      backend = new KeyringBackend(keyring, locks)
    } else if (mode === 'required') {
      throw new CliError(`CREDPROXY_KEYRING=required but no OS keyring is reachable (${failure})`, KEYRING_HINT, EXIT.UNAVAILABLE)
    } else {
      log(
        `credproxy: no OS keyring reachable (${failure}); using encrypted files in ${paths.dataDir}. ` +
          'Set CREDPROXY_KEYRING=off to skip this check.',
      )
    }
  }
  backend ??= await FileBackend.open(paths.dataDir)
  return {
    tokens: new HostTokenStoreImpl(backend, locks, new UsageStats(paths.stateDir, locks, log), log),
    keys: new HostKeyStorageImpl(backend, locks),
    backend: backend.name,
  }
}
