// Name rules shared by every edge (wire, CLI, storage). See dev-docs/protocol.md "Names".
import { z } from 'zod'

export const PROVIDER_NAME_PATTERN = /^[a-zA-Z0-9._@-]{1,64}$/
export const BUCKET_NAME_PATTERN = PROVIDER_NAME_PATTERN
export const KEY_NAME_PATTERN = /^[a-zA-Z0-9._-]{1,64}$/
export const DEFAULT_BUCKET = 'default'

export const ProviderName = z.string().regex(PROVIDER_NAME_PATTERN)
export const BucketName = z.string().regex(BUCKET_NAME_PATTERN)
export const KeyName = z.string().regex(KEY_NAME_PATTERN)

export function isProviderName(value: string): boolean {
  return PROVIDER_NAME_PATTERN.test(value)
}

export function isKeyName(value: string): boolean {
  return KEY_NAME_PATTERN.test(value)
}
