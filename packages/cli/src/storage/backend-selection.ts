// CREDPROXY_KEYRING and CREDPROXY_KEYRING_SERVICE, validated at the edge, and the
// saved backend choice (storage.json) that keeps credentials from moving silently.
import { join } from 'node:path'
import { UsageError } from '../errors.js'
import { ensurePrivateDir, readPrivateFile } from '../fs-private.js'
import { writeFileAtomic } from './atomic-write.js'
import { extraKey, isJsonObject } from './json-checks.js'
import { DEFAULT_KEYRING_SERVICE } from './keyring-client.js'
import type { BackendName } from './types.js'
import { parseCheckedJsonFile } from '../json-file.js'

export const KEYRING_MODES = ['auto', 'off', 'required'] as const
export type KeyringMode = (typeof KEYRING_MODES)[number]

/** A service name goes into D-Bus attributes; keep it plain. */
const KEYRING_SERVICE = /^[a-zA-Z0-9._-]{1,128}$/

export function keyringMode(env: NodeJS.ProcessEnv): KeyringMode {
  const raw = env['CREDPROXY_KEYRING']
  if (raw === undefined || raw === '') return 'auto'
  const mode = raw.trim().toLowerCase()
  if (!(KEYRING_MODES as readonly string[]).includes(mode)) {
    throw new UsageError(
      `CREDPROXY_KEYRING must be one of ${KEYRING_MODES.join(', ')}`,
      'Unset it for the default (auto), or set CREDPROXY_KEYRING=off to use encrypted files only.',
    )
  }
  return mode as KeyringMode
}

export function keyringService(env: NodeJS.ProcessEnv): string {
  const raw = env['CREDPROXY_KEYRING_SERVICE']
  if (raw === undefined || raw === '') return DEFAULT_KEYRING_SERVICE
  if (!KEYRING_SERVICE.test(raw)) {
    throw new UsageError(
      'CREDPROXY_KEYRING_SERVICE must be 1-128 characters from a-z A-Z 0-9 . _ -',
      `Unset it to use the default service name '${DEFAULT_KEYRING_SERVICE}'.`,
    )
  }
  return raw
}

/** The saved backend choice: <configDir>/storage.json, written on first use (dev-docs/storage.md). */
export const BACKEND_CHOICE_FILE = 'storage.json'

export interface BackendChoice {
  version: 1
  backend: BackendName
}

/** The first invalid field of a parsed storage.json ('' for the whole) and why; undefined when valid. */
function backendChoiceProblem(json: unknown): { field: string; issue: string } | undefined {
  if (!isJsonObject(json)) return { field: '', issue: 'expected an object' }
  if (json['version'] !== 1) return { field: 'version', issue: 'expected 1' }
  if (json['backend'] !== 'keyring' && json['backend'] !== 'file') return { field: 'backend', issue: 'expected "keyring" or "file"' }
  const extra = extraKey(json, ['version', 'backend'])
  return extra === undefined ? undefined : { field: '', issue: `unrecognized key ${JSON.stringify(extra)}` }
}

export function backendChoicePath(configDir: string): string {
  return join(configDir, BACKEND_CHOICE_FILE)
}

/** The saved choice, or null before first use. A file that does not parse is an error naming the file and field. */
export async function readBackendChoice(configDir: string): Promise<BackendChoice | null> {
  const file = backendChoicePath(configDir)
  const text = await readPrivateFile(file)
  if (text === null) return null
  return parseCheckedJsonFile<BackendChoice>(text, file, backendChoiceProblem, {
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
