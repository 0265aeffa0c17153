// CREDPROXY_KEYRING and CREDPROXY_KEYRING_SERVICE, validated at the edge.
import * as z from 'zod'
import { UsageError } from '../cli-io.js'
import { DEFAULT_KEYRING_SERVICE } from './keyring-client.js'

export const KEYRING_MODES = ['auto', 'off', 'required'] as const
export type KeyringMode = (typeof KEYRING_MODES)[number]

const KeyringModeSchema = z.enum(KEYRING_MODES)
/** A service name goes into D-Bus attributes; keep it plain. */
const KeyringServiceSchema = z.string().regex(/^[a-zA-Z0-9._-]{1,128}$/)

export function keyringMode(env: NodeJS.ProcessEnv): KeyringMode {
  const raw = env['CREDPROXY_KEYRING']
  if (raw === undefined || raw === '') return 'auto'
  const parsed = KeyringModeSchema.safeParse(raw.trim().toLowerCase())
  if (!parsed.success) {
    throw new UsageError(
      `CREDPROXY_KEYRING must be one of ${KEYRING_MODES.join(', ')}`,
      'Unset it for the default (auto), or set CREDPROXY_KEYRING=off to use encrypted files only.',
    )
  }
  return parsed.data
}

export function keyringService(env: NodeJS.ProcessEnv): string {
  const raw = env['CREDPROXY_KEYRING_SERVICE']
  if (raw === undefined || raw === '') return DEFAULT_KEYRING_SERVICE
  const parsed = KeyringServiceSchema.safeParse(raw)
  if (!parsed.success) {
    throw new UsageError(
      'CREDPROXY_KEYRING_SERVICE must be 1-128 characters from a-z A-Z 0-9 . _ -',
      `Unset it to use the default service name '${DEFAULT_KEYRING_SERVICE}'.`,
    )
  }
  return parsed.data
}
