// The stores a credential command works on. On the host: the keyring or encrypted
// files. Commands use only the core interfaces, so a socket-backed branch (inside
// a sandbox) can be added here without touching them.
import type { ProviderKeyStorage, TokenStore } from '@credproxy/core'
import { writeLine, type CliIO } from '../cli-io.js'
import { openHostStores } from '../storage/index.js'

export interface CommandStores {
  tokens: TokenStore
  keys: ProviderKeyStorage
  /** 'keyring' or 'file' on the host. */
  backend: string
}

export async function openCommandStores(io: CliIO): Promise<CommandStores> {
  const stores = await openHostStores({ env: io.env, log: (line) => writeLine(io.stderr, line) })
  return { tokens: stores.tokens, keys: stores.keys, backend: stores.backend }
}
