// TokenStore and ProviderKeyStorage over a record backend: name validation, token
// schema, write locks (lock, re-read, act, write, unlock), refresh/auth locks, usage.
import {
  BUCKET_NAME_PATTERN,
  DEFAULT_BUCKET,
  KEY_NAME_PATTERN,
  PROVIDER_NAME_PATTERN,
  ProxyError,
  RESERVED_NAMES,
  type BucketStats,
  type LockOptions,
  type OAuthToken,
  type ProviderKeyStorage,
} from '@credproxy/core/client'
import { tokenProblem } from './json-checks.js'
import {
  LockTimeoutError,
  REFRESH_LOCK_WAIT_MS,
  releaseQuietly,
  WRITE_LOCK_WAIT_MS,
  type HeldLock,
  type LockDirectory,
  type ReleaseLock,
} from './locks.js'
import { recordFileBase, type RecordBackend, type RecordRef } from './record-backend.js'
import type { CredentialLockPurpose, HostTokenStore } from './types.js'
import type { UsageStats } from './usage-stats.js'
import { parseCheckedJsonFile } from '../json-file.js'

/** An API key value larger than this is a mistake (a pasted file), not a key. */
export const MAX_KEY_VALUE_BYTES = 64 * 1024
/** A token larger than this would not fit a v1 frame anyway. */
export const MAX_TOKEN_JSON_BYTES = 256 * 1024

const RESERVED = RESERVED_NAMES.join(', ')

function tokenRef(provider: string, bucket: string | undefined): RecordRef & { kind: 'token' } {
  const b = bucket ?? DEFAULT_BUCKET
  if (!PROVIDER_NAME_PATTERN.test(provider)) {
    throw new ProxyError('INVALID_REQUEST', `invalid provider name (allowed: 1-64 of a-z A-Z 0-9 . _ @ -; ${RESERVED} are reserved)`)
  }
  if (!BUCKET_NAME_PATTERN.test(b)) {
    throw new ProxyError('INVALID_REQUEST', `invalid bucket name (allowed: 1-64 of a-z A-Z 0-9 . _ @ -; ${RESERVED} are reserved)`)
  }
  return { kind: 'token', provider, bucket: b }
}

function keyRef(name: string): RecordRef & { kind: 'key' } {
  if (!KEY_NAME_PATTERN.test(name)) {
    throw new ProxyError('INVALID_REQUEST', `invalid API key name (allowed: 1-64 of a-z A-Z 0-9 . _ -; ${RESERVED} are reserved)`)
  }
  return { kind: 'key', name }
}

/** One lock file per purpose and credential, whichever API takes it. */
function credentialLockName(purpose: CredentialLockPurpose, provider: string, bucket: string | undefined): string {
  return `${purpose}+${recordFileBase(tokenRef(provider, bucket))}`
}

/** Validate a token for storage; the error names the first bad field, never a value. */
export function parseToken(value: unknown): OAuthToken {
  const problem = tokenProblem(value)
  if (problem !== undefined) {
    throw new ProxyError('INVALID_REQUEST', `token field '${problem.field || '(token)'}' is invalid: expected ${problem.expected}`)
  }
  return value as OAuthToken
}

function serializeToken(token: OAuthToken): string {
  const text = JSON.stringify(parseToken(token))
  if (Buffer.byteLength(text) > MAX_TOKEN_JSON_BYTES) {
    throw new ProxyError('INVALID_REQUEST', `token is larger than ${MAX_TOKEN_JSON_BYTES} bytes`)
  }
  return text
}

function writeLockName(ref: RecordRef): string {
  return `write+${recordFileBase(ref)}`
}

export class HostTokenStoreImpl implements HostTokenStore {
  /** Locks acquired through acquire*Lock and not yet released, by lock name. */
  private readonly held = new Map<string, ReleaseLock>()

  constructor(
    private readonly backend: RecordBackend,
    private readonly locks: LockDirectory,
    private readonly usage: UsageStats,
    private readonly log: (line: string) => void,
  ) {}

  async getToken(provider: string, bucket?: string): Promise<OAuthToken | null> {
    return this.readToken(tokenRef(provider, bucket))
  }

  async saveToken(provider: string, token: OAuthToken, bucket?: string): Promise<void> {
    const ref = tokenRef(provider, bucket)
    const text = serializeToken(token)
    await this.withWriteLock(ref, () => this.backend.write(ref, text))
  }

  async removeToken(provider: string, bucket?: string): Promise<void> {
    const ref = tokenRef(provider, bucket)
    await this.withWriteLock(ref, () => this.backend.remove(ref))
    await this.usage.forget(ref.provider, ref.bucket)
  }

  async updateToken(
    provider: string,
    bucket: string,
    update: (current: OAuthToken | null) => OAuthToken | null | Promise<OAuthToken | null>,
  ): Promise<OAuthToken | null> {
    const ref = tokenRef(provider, bucket)
    return this.withWriteLock(ref, async () => {
      const next = await update(await this.readToken(ref))
      if (next === null) {
        await this.backend.remove(ref)
        return null
      }
      const text = serializeToken(next)
      await this.backend.write(ref, text)
      return JSON.parse(text) as OAuthToken
    })
  }

  async listProviders(): Promise<string[]> {
    const refs = await this.backend.list('token')
    return [...new Set(refs.map((ref) => (ref.kind === 'token' ? ref.provider : '')))].filter(Boolean).sort()
  }

  async listBuckets(provider: string): Promise<string[]> {
    tokenRef(provider, undefined)
    const refs = await this.backend.list('token')
    return refs
      .flatMap((ref) => (ref.kind === 'token' && ref.provider === provider ? [ref.bucket] : []))
      .sort()
  }

  /** null when no token is stored for provider/bucket. */
  async getBucketStats(provider: string, bucket?: string): Promise<BucketStats | null> {
    const ref = tokenRef(provider, bucket)
    // One record lookup, not a listing of the whole backend (or a keyring index read).
    if ((await this.backend.read(ref)) === null) return null
    return this.usage.stats(ref.provider, ref.bucket)
  }

  /** Counted in memory; usage.json gets it within a second or on close() (see UsageStats). */
  async recordUsage(provider: string, bucket: string): Promise<void> {
    const ref = tokenRef(provider, bucket)
    this.usage.record(ref.provider, ref.bucket)
  }

  /** Write the usage counts still held in memory. The store stays usable. */
  close(): Promise<void> {
    return this.usage.close()
  }

  lockCredential(purpose: CredentialLockPurpose, provider: string, bucket: string, options: { waitMs: number }): Promise<HeldLock | null> {
    return this.locks.tryAcquire(credentialLockName(purpose, provider, bucket), options)
  }

  acquireRefreshLock(provider: string, options?: LockOptions): Promise<boolean> {
    return this.acquireHeld('refresh', provider, options)
  }

  releaseRefreshLock(provider: string, bucket?: string): Promise<void> {
    return this.releaseHeld('refresh', provider, bucket)
  }

  acquireAuthLock(provider: string, options?: LockOptions): Promise<boolean> {
    return this.acquireHeld('auth', provider, options)
  }

  releaseAuthLock(provider: string, bucket?: string): Promise<void> {
    return this.releaseHeld('auth', provider, bucket)
  }

  private async acquireHeld(kind: CredentialLockPurpose, provider: string, options: LockOptions = {}): Promise<boolean> {
    const name = credentialLockName(kind, provider, options.bucket)
    // options.staleMs is not used: a lock lives exactly as long as its holder (flock).
    const lock = await this.locks.tryAcquire(name, { waitMs: options.waitMs ?? REFRESH_LOCK_WAIT_MS })
    if (lock === null) return false
    this.held.set(name, lock.release)
    return true
  }

  private async releaseHeld(kind: CredentialLockPurpose, provider: string, bucket?: string): Promise<void> {
    const name = credentialLockName(kind, provider, bucket)
    const release = this.held.get(name)
    if (release === undefined) return
    this.held.delete(name)
    await releaseQuietly(release, name, this.log)
  }

  private async readToken(ref: RecordRef & { kind: 'token' }): Promise<OAuthToken | null> {
    const text = await this.backend.read(ref)
    if (text === null) return null
    const where = this.backend.describe(ref)
    return parseCheckedJsonFile<OAuthToken>(text, where, (json) => {
      const problem = tokenProblem(json)
      return problem === undefined ? undefined : { field: problem.field, issue: `expected ${problem.expected}` }
    }, {
      message: (problem) => `${where} does not hold a valid token (field '${problem.kind === 'schema' ? problem.field : ''}')`,
      hint: `Store it again: credproxy auth import ${ref.provider} --bucket ${ref.bucket} < token.json`,
    })
  }

  private withWriteLock<T>(ref: RecordRef, fn: () => Promise<T>): Promise<T> {
    return withWriteLock(this.locks, ref, fn)
  }
}

export function withWriteLock<T>(locks: LockDirectory, ref: RecordRef, fn: () => Promise<T>): Promise<T> {
  return locks.withLock(
    writeLockName(ref),
    { waitMs: WRITE_LOCK_WAIT_MS },
    () => new LockTimeoutError(`write (${ref.kind === 'token' ? `${ref.provider}/${ref.bucket}` : ref.name})`, WRITE_LOCK_WAIT_MS),
    fn,
  )
}

export class HostKeyStorageImpl implements ProviderKeyStorage {
  constructor(
    private readonly backend: RecordBackend,
    private readonly locks: LockDirectory,
  ) {}

  getKey(name: string): Promise<string | null> {
    return this.backend.read(keyRef(name))
  }

  async saveKey(name: string, value: string): Promise<void> {
    const ref = keyRef(name)
    const trimmed = value.trim()
    if (trimmed === '') throw new ProxyError('INVALID_REQUEST', `the value for API key ${name} is empty`)
    if (Buffer.byteLength(trimmed) > MAX_KEY_VALUE_BYTES) {
      throw new ProxyError('INVALID_REQUEST', `the value for API key ${name} is larger than ${MAX_KEY_VALUE_BYTES} bytes`)
    }
    await withWriteLock(this.locks, ref, () => this.backend.write(ref, trimmed))
  }

  deleteKey(name: string): Promise<boolean> {
    const ref = keyRef(name)
    return withWriteLock(this.locks, ref, () => this.backend.remove(ref))
  }

  async listKeys(): Promise<string[]> {
    const refs = await this.backend.list('key')
    return refs.flatMap((ref) => (ref.kind === 'key' ? [ref.name] : [])).sort()
  }

  async hasKey(name: string): Promise<boolean> {
    return (await this.getKey(name)) !== null
  }
}
