// Thin async wrapper over @napi-rs/keyring: one service name, accounts named by
// the caller, every failure turned into a CredproxyError that says what to do.
import { randomBytes } from 'node:crypto'
import type { AsyncEntry as AsyncEntryType, EntryOptions } from '@napi-rs/keyring'
import { CredproxyError } from '../errors.js'

export const DEFAULT_KEYRING_SERVICE = 'credproxy'
/** A Secret Service that never answers must not hang a command. */
export const KEYRING_CALL_TIMEOUT_MS = 10_000
export const KEYRING_PROBE_TIMEOUT_MS = 5_000
/**
 * Secret Service only: without one, @napi-rs/keyring would silently use the kernel
 * keyring, which forgets everything at reboot; the encrypted files are the fallback.
 */
const ENTRY_OPTIONS: EntryOptions = { linux: { store: 'secret-service' } }

export const KEYRING_HINT =
  'Start a Secret Service (for example gnome-keyring in a D-Bus session), or set CREDPROXY_KEYRING=off to use encrypted files.'

// The native binding is loaded on the first keyring call: a file-store command never pays for it.
let binding: Promise<typeof import('@napi-rs/keyring')> | undefined

async function entryFor(service: string, account: string): Promise<AsyncEntryType> {
  binding ??= import('@napi-rs/keyring')
  const { AsyncEntry } = await binding
  return new AsyncEntry(service, account, ENTRY_OPTIONS)
}

export class KeyringClient {
  constructor(readonly service: string) {}

  async get(account: string, timeoutMs = KEYRING_CALL_TIMEOUT_MS): Promise<string | null> {
    try {
      return await (await entryFor(this.service, account)).getPassword(AbortSignal.timeout(timeoutMs))
    } catch (error) {
      throw keyringError('read', account, error)
    }
  }

  /** Writes are read back: a keyring that silently drops or alters a value is an error, not a lost credential. */
  async set(account: string, value: string, timeoutMs = KEYRING_CALL_TIMEOUT_MS): Promise<void> {
    try {
      const entry = await entryFor(this.service, account)
      await entry.setPassword(value, AbortSignal.timeout(timeoutMs))
      const back = await entry.getPassword(AbortSignal.timeout(timeoutMs))
      if (back !== value) throw new Error('the value read back differs from the value written')
    } catch (error) {
      throw keyringError('write', account, error)
    }
  }

  /** true when an entry was deleted. */
  async delete(account: string, timeoutMs = KEYRING_CALL_TIMEOUT_MS): Promise<boolean> {
    try {
      return await (await entryFor(this.service, account)).deletePassword(AbortSignal.timeout(timeoutMs))
    } catch (error) {
      throw keyringError('delete', account, error)
    }
  }

  /** set/get/delete of a throwaway entry; null when the keyring works, else why not. */
  async probe(): Promise<string | null> {
    const account = `probe:${process.pid}:${randomBytes(6).toString('hex')}`
    const value = randomBytes(16).toString('hex')
    try {
      await this.set(account, value, KEYRING_PROBE_TIMEOUT_MS)
      await this.delete(account, KEYRING_PROBE_TIMEOUT_MS)
      return null
    } catch (error) {
      return error instanceof CredproxyError && error.code === 'KEYRING_UNAVAILABLE' ? reasonOf(error.cause) : String(error)
    }
  }
}

// napi-rs messages name the platform failure, never the value.
function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

function keyringError(action: string, account: string, error: unknown): CredproxyError {
  return new CredproxyError('KEYRING_UNAVAILABLE', `could not ${action} keyring entry '${account}': ${reasonOf(error)}`, {
    hint: KEYRING_HINT,
    cause: error,
  })
}
