// What both backends provide: opaque string records addressed by validated names.
// Token and key semantics (validation, locking, usage) live above, in host-stores.ts.
import type { BackendName } from './types.js'

export type RecordRef =
  | { kind: 'token'; provider: string; bucket: string }
  | { kind: 'key'; name: string }

export type RecordKind = RecordRef['kind']

export interface RecordBackend {
  readonly name: BackendName
  /** null when absent; throws (naming where) when present but unreadable. */
  read(ref: RecordRef): Promise<string | null>
  write(ref: RecordRef, value: string): Promise<void>
  /** true when something was removed. */
  remove(ref: RecordRef): Promise<boolean>
  list(kind: RecordKind): Promise<RecordRef[]>
  /** Where the record lives (a path or a keyring entry), for messages. Never a value. */
  describe(ref: RecordRef): string
}

/**
 * Identity of a record: keyring account name and the AAD of its encrypted file.
 * ':' is outside every name alphabet, so the parts cannot be confused.
 */
export function recordId(ref: RecordRef): string {
  return ref.kind === 'token' ? `token:${ref.provider}:${ref.bucket}` : `key:${ref.name}`
}

/**
 * File and lock base name. '+' is outside the name alphabets and the prefix means
 * a name such as '..' can never be a whole path segment.
 */
export function recordFileBase(ref: RecordRef): string {
  return ref.kind === 'token' ? `token+${ref.provider}+${ref.bucket}` : `key+${ref.name}`
}

const TOKEN_BASE = /^token\+([a-zA-Z0-9._@-]{1,64})\+([a-zA-Z0-9._@-]{1,64})$/
const KEY_BASE = /^key\+([a-zA-Z0-9._-]{1,64})$/

export function parseRecordFileBase(base: string): RecordRef | null {
  const token = TOKEN_BASE.exec(base)
  if (token?.[1] !== undefined && token[2] !== undefined) return { kind: 'token', provider: token[1], bucket: token[2] }
  const key = KEY_BASE.exec(base)
  if (key?.[1] !== undefined) return { kind: 'key', name: key[1] }
  return null
}
