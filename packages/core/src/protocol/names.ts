// Name rules shared by every edge (wire, CLI, storage). See dev-docs/protocol.md "Names".
// No zod here: the sandbox-side client loads this file (name-schemas.ts has the zod forms).

/**
 * Names that are JavaScript object machinery: a map keyed by one of them would reach
 * Object.prototype or Object itself, so no edge accepts them (one list for all).
 */
export const RESERVED_NAMES: readonly string[] = ['__proto__', 'constructor', 'prototype']

const NOT_RESERVED = `(?!(?:${RESERVED_NAMES.join('|')})$)`

// The reserved names are refused inside the patterns, so every caller of .test() gets the rule.
export const PROVIDER_NAME_PATTERN = new RegExp(`^${NOT_RESERVED}[a-zA-Z0-9._@-]{1,64}$`)
export const BUCKET_NAME_PATTERN = PROVIDER_NAME_PATTERN
export const KEY_NAME_PATTERN = new RegExp(`^${NOT_RESERVED}[a-zA-Z0-9._-]{1,64}$`)
export const DEFAULT_BUCKET = 'default'

export function isReservedName(value: string): boolean {
  return RESERVED_NAMES.includes(value)
}

export function isProviderName(value: string): boolean {
  return PROVIDER_NAME_PATTERN.test(value)
}

export function isBucketName(value: string): boolean {
  return BUCKET_NAME_PATTERN.test(value)
}

export function isKeyName(value: string): boolean {
  return KEY_NAME_PATTERN.test(value)
}
