// CREDPROXY_KEYRING and CREDPROXY_KEYRING_SERVICE, validated at the edge, and the
// saved backend choice (storage.json) that keeps credentials from moving silently.
import { join } from 'node:path'
import * as z from 'zod'
import { ensurePrivateDir, readPrivateFile } from '../fs-private.js'
import { writeFileAtomic } from './atomic-write.js'
import { DEFAULT_KEYRING_SERVICE } from './keyring-client.js'
import type { BackendName } from './types.js'
import { UsageError } from '../errors.js'
import { parseJsonFile } from '../json-file.js'

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

/** The saved backend choice: <configDir>/storage.json, written on first use (dev-docs/storage.md). */
export const BACKEND_CHOICE_FILE = 'storage.json'

const BackendChoiceSchema = z.strictObject({
  version: z.literal(1),
  backend: z.enum(['keyring', 'file']),
})
export type BackendChoice = z.infer<typeof BackendChoiceSchema>

export function backendChoicePath(configDir: string): string {
  return join(configDir, BACKEND_CHOICE_FILE)
}

/** The saved choice, or null before first use. A file that does not parse is an error naming the file and field. */
export async function readBackendChoice(configDir: string): Promise<BackendChoice | null> {
  const file = backendChoicePath(configDir)
  const text = await readPrivateFile(file)
  if (text === null) return null
  return parseJsonFile(text, file, BackendChoiceSchema, {
    message: (problem) =>
      problem.kind === 'syntax' ? `${file} is not valid JSON` : `${file}: field '${problem.field || '(top level)'}' is invalid (${problem.issue})`,
    hint: (problem) =>
      problem.kind === 'syntax'
        ? `Fix it, or delete it and credproxy chooses again on next use: {"version":1,"backend":"keyring"} or "file".`
        : 'Expected {"version":1,"backend":"keyring"} or {"version":1,"backend":"file"}; to move credentials use `credproxy key migrate --to keyring|file`.',
  })
}

export async function saveBackendChoice(configDir: string, backend: BackendName): Promise<void> {
  await ensurePrivateDir(configDir)
  const choice: BackendChoice = { version: 1, backend }
  await writeFileAtomic(backendChoicePath(configDir), `${JSON.stringify(choice)}\n`)
}
