// Hand-written checks of the JSON the host stores read (storage.json, the machine secret,
// envelopes, usage.json, the keyring index, stored tokens). Every host `key get` and
// `token` reads some of these; zod there cost ~40 ms of start-up (compiling its bundle
// chunk) and several MiB of memory. test/storage-json-checks.test.ts holds them to the rules.

export type JsonObject = Record<string, unknown>

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** The first own key of value that allowed does not list (a strict object refuses it). */
export function extraKey(value: JsonObject, allowed: readonly string[]): string | undefined {
  return Object.keys(value).find((key) => !allowed.includes(key))
}

/** Canonical, padded base64 (what Buffer#toString('base64') writes). */
export const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/

export function isNonEmptyString(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0
}

/**
 * The first invalid field of an OAuth token (the rules of core's OAuthTokenSchema: provider
 * extras are kept), with what was expected; undefined when it is valid. '' is the value itself.
 */
export function tokenProblem(value: unknown): { field: string; expected: string } | undefined {
  if (!isJsonObject(value)) return { field: '', expected: 'an object' }
  if (!isNonEmptyString(value['access_token'])) return { field: 'access_token', expected: 'a non-empty string' }
  if (value['refresh_token'] !== undefined && !isNonEmptyString(value['refresh_token'])) return { field: 'refresh_token', expected: 'a non-empty string' }
  if (typeof value['expiry'] !== 'number' || !Number.isFinite(value['expiry'])) return { field: 'expiry', expected: 'a number (Unix seconds)' }
  if (!isNonEmptyString(value['token_type'])) return { field: 'token_type', expected: 'a non-empty string' }
  if (value['scope'] !== undefined && value['scope'] !== null && typeof value['scope'] !== 'string') return { field: 'scope', expected: 'a string or null' }
  return undefined
}
