// Host-aware factories for embedders: the same names as @credproxy/core's, but on
// the host (no CREDPROXY_SOCKET) they return the keyring / encrypted-file stores.
// Opening host storage is async (keyring probe), so the host stores open lazily
// on the first call and every method waits for that one opening.
import {
  createProviderKeyStorage as createCoreProviderKeyStorage,
  createTokenStore as createCoreTokenStore,
  type ProviderKeyStorage,
  type TokenStore,
} from '@credproxy/core'
import { openHostStores } from './storage/index.js'
import type { HostStores } from './storage/types.js'

export interface HostFactoryOptions {
  env?: NodeJS.ProcessEnv
  /** Where the one line about a keyring fallback goes (default: stderr). */
  log?: (line: string) => void
}

function lazyHostStores(options: HostFactoryOptions): () => Promise<HostStores> {
  let opening: Promise<HostStores> | undefined
  return () => {
    if (opening === undefined) {
      const attempt = openHostStores({ env: options.env ?? process.env, ...(options.log ? { log: options.log } : {}) })
      // A failed opening (bad env, unwritable home) must not be cached: the next call tries again.
      attempt.catch(() => {
        if (opening === attempt) opening = undefined
      })
      opening = attempt
    }
    return opening
  }
}

export function createTokenStore(options: HostFactoryOptions = {}): TokenStore {
  const env = options.env ?? process.env
  const host = lazyHostStores(options)
  return createCoreTokenStore({
    env,
    hostStore: () => ({
      getToken: async (p, b) => (await host()).tokens.getToken(p, b),
      saveToken: async (p, t, b) => (await host()).tokens.saveToken(p, t, b),
      removeToken: async (p, b) => (await host()).tokens.removeToken(p, b),
      listProviders: async () => (await host()).tokens.listProviders(),
      listBuckets: async (p) => (await host()).tokens.listBuckets(p),
      getBucketStats: async (p, b) => (await host()).tokens.getBucketStats(p, b),
      acquireRefreshLock: async (p, o) => (await host()).tokens.acquireRefreshLock(p, o),
      releaseRefreshLock: async (p, b) => (await host()).tokens.releaseRefreshLock(p, b),
      acquireAuthLock: async (p, o) => (await host()).tokens.acquireAuthLock(p, o),
      releaseAuthLock: async (p, b) => (await host()).tokens.releaseAuthLock(p, b),
    }),
  })
}

export function createProviderKeyStorage(options: HostFactoryOptions = {}): ProviderKeyStorage {
  const env = options.env ?? process.env
  const host = lazyHostStores(options)
  return createCoreProviderKeyStorage({
    env,
    hostStorage: () => ({
      getKey: async (n) => (await host()).keys.getKey(n),
      saveKey: async (n, v) => (await host()).keys.saveKey(n, v),
      deleteKey: async (n) => (await host()).keys.deleteKey(n),
      listKeys: async () => (await host()).keys.listKeys(),
      hasKey: async (n) => (await host()).keys.hasKey(n),
    }),
  })
}
