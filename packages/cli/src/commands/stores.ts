// The stores a credential command works on: socket-backed inside a sandbox
// (CREDPROXY_SOCKET set), the keyring or encrypted files on the host. Commands
// use only the core interfaces, so the same command works on both sides.
import { createProviderKeyStorage, createTokenStore, isProxyMode, type ProviderKeyStorage, type TokenStore } from '@credproxy/core/client'
import type { CliIO } from '../cli-io.js'
import { logLineTo } from '../escape.js'

export interface CommandStores {
  tokens: TokenStore
  keys: ProviderKeyStorage
  /** 'keyring' or 'file' on the host, 'broker' inside a sandbox. */
  backend: string
}

export async function openCommandStores(io: CliIO): Promise<CommandStores> {
  if (isProxyMode(io.env)) {
    return {
      tokens: createTokenStore({ env: io.env }),
      keys: createProviderKeyStorage({ env: io.env }),
      backend: 'broker',
    }
  }
  // Loaded here only: inside a sandbox the host storage code is never read.
  const { openHostStores } = await import('../storage/index.js')
  const stores = await openHostStores({ env: io.env, log: logLineTo(io.stderr) })
  return { tokens: stores.tokens, keys: stores.keys, backend: stores.backend }
}
