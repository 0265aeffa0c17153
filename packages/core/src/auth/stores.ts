// The storage interfaces host code and sandboxed code share. Host implementations
// live in @credproxy/cli (keyring, encrypted files); proxy implementations here.
import type { OAuthToken } from './token.js'

export interface BucketStats {
  bucket: string
  requestCount: number
  /** This bucket's share of the provider's requests, 0..100. */
  percentage: number
  /** Unix milliseconds of the last use, when known. */
  lastUsed?: number
}

export interface LockOptions {
  bucket?: string
  /** How long to wait for the lock before giving up (ms). */
  waitMs?: number
  /** Age after which a lock left by a crashed process is taken over (ms); the host store ignores it (flock: free once the holder dies). */
  staleMs?: number
}

export interface TokenStore {
  getToken(provider: string, bucket?: string): Promise<OAuthToken | null>
  saveToken(provider: string, token: OAuthToken, bucket?: string): Promise<void>
  removeToken(provider: string, bucket?: string): Promise<void>
  listProviders(): Promise<string[]>
  listBuckets(provider: string): Promise<string[]>
  getBucketStats(provider: string, bucket?: string): Promise<BucketStats | null>
  /** true when acquired within waitMs. */
  acquireRefreshLock(provider: string, options?: LockOptions): Promise<boolean>
  releaseRefreshLock(provider: string, bucket?: string): Promise<void>
  acquireAuthLock(provider: string, options?: LockOptions): Promise<boolean>
  releaseAuthLock(provider: string, bucket?: string): Promise<void>
}

export interface ProviderKeyStorage {
  getKey(name: string): Promise<string | null>
  /** The value is trimmed before it is stored. */
  saveKey(name: string, value: string): Promise<void>
  /** true when a key was deleted. */
  deleteKey(name: string): Promise<boolean>
  listKeys(): Promise<string[]>
  hasKey(name: string): Promise<boolean>
}
