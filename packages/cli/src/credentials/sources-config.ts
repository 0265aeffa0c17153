// Credential sources: <configDir>/sources.json, validated with zod. A name declared
// here is served from a host command, a host variable or a file instead of the store.
// A file that does not parse is a fatal error naming the file and the field.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { isAbsolute, join } from 'node:path'
import { BUCKET_NAME_PATTERN, KEY_NAME_PATTERN, PROVIDER_NAME_PATTERN } from '@credproxy/core'
import * as z from 'zod'
import { CredproxyError } from '../errors.js'
import { parseJsonFile } from '../json-file.js'
import { SOURCES_FILE_NAME, type CredproxyPaths } from '../paths.js'

export { SOURCES_FILE_NAME }
/** Largest sources.json we read; a config file is a few KiB. */
export const MAX_SOURCES_FILE_BYTES = 1_048_576
export const DEFAULT_SOURCE_TIMEOUT_MS = 10_000
export const MAX_SOURCE_TIMEOUT_MS = 300_000
/** How long a command's value is reused when it declares no expiry. */
export const DEFAULT_SOURCE_TTL_SECONDS = 300
/** A value with an expiry is refreshed this long before it. */
export const DEFAULT_EXPIRY_MARGIN_SECONDS = 60

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/

const SourceSchema = z
  .strictObject({
    /** argv, run without a shell; argv[0] absolute or looked up on the host PATH. */
    command: z.array(z.string().min(1).max(4096)).min(1).max(256).optional(),
    /** A host variable, read when the session starts. */
    env: z.string().regex(ENV_NAME, 'a variable name: letters, digits, _').optional(),
    /** An absolute path, read on every use. */
    file: z.string().min(1).max(4096).refine((p) => isAbsolute(p), 'an absolute path').optional(),
    /** raw: trimmed stdout is the secret; json: {"value", "expires_at"?, "expires_in"?}. */
    output: z.enum(['raw', 'json']).default('raw'),
    timeout_ms: z.number().int().min(1).max(MAX_SOURCE_TIMEOUT_MS).default(DEFAULT_SOURCE_TIMEOUT_MS),
    /** Host variables passed through to the command (its environment is otherwise PATH, HOME, LANG only). */
    pass_env: z.array(z.string().regex(ENV_NAME, 'a variable name: letters, digits, _')).max(64).default([]),
    ttl_seconds: z.number().int().min(0).max(86_400 * 30).optional(),
    expiry_margin_seconds: z.number().int().min(0).max(86_400).default(DEFAULT_EXPIRY_MARGIN_SECONDS),
  })
  .superRefine((value, ctx) => {
    const kinds = [value.command, value.env, value.file].filter((k) => k !== undefined).length
    if (kinds !== 1) ctx.addIssue({ code: 'custom', path: ['command'], message: 'give exactly one of command, env, file' })
  })

function isTokenName(id: string): boolean {
  const [provider, bucket, ...rest] = id.split('/')
  return rest.length === 0 && provider !== undefined && bucket !== undefined && PROVIDER_NAME_PATTERN.test(provider) && BUCKET_NAME_PATTERN.test(bucket)
}

// Names are checked here rather than as record keys, so the error names the entry.
export const SourcesFileSchema = z
  .strictObject({
    keys: z.record(z.string(), SourceSchema).default({}),
    tokens: z.record(z.string(), SourceSchema).default({}),
  })
  .superRefine((value, ctx) => {
    for (const name of Object.keys(value.keys)) {
      if (!KEY_NAME_PATTERN.test(name)) ctx.addIssue({ code: 'custom', path: ['keys', name], message: 'key names match [a-zA-Z0-9._-]{1,64}' })
    }
    for (const name of Object.keys(value.tokens)) {
      if (!isTokenName(name)) ctx.addIssue({ code: 'custom', path: ['tokens', name], message: 'token sources are named provider/bucket' })
    }
  })

export type SourceSpec = z.infer<typeof SourceSchema>
export type SourcesFile = z.infer<typeof SourcesFileSchema>
/** One declared source: the key name or `provider/bucket` it serves. */
export type SourceConfig = SourceSpec & { name: string; kind: 'key' | 'token' }

export interface SourcesConfig {
  file: string
  keys: Map<string, SourceConfig>
  tokens: Map<string, SourceConfig>
}

export function sourcesFilePath(paths: CredproxyPaths): string {
  return join(paths.configDir, SOURCES_FILE_NAME)
}

/** What a listing may show of a source: the kind and the program's name, never its arguments. */
export function describeSource(source: { command?: readonly string[] | undefined; env?: string | undefined; file?: string | undefined }): string {
  if (source.command !== undefined) return `command ${programName(source.command[0] ?? '')}`
  if (source.env !== undefined) return `env ${source.env}`
  return `file ${source.file ?? ''}`
}

export function programName(argv0: string): string {
  return argv0.split('/').at(-1) ?? argv0
}

/** null when the file does not exist; a CredproxyError (INVALID_FILE) naming the file and field when it is invalid. */
export async function loadSourcesConfig(paths: CredproxyPaths): Promise<SourcesConfig | null> {
  const file = sourcesFilePath(paths)
  const text = await readSourcesText(file)
  return text === null ? null : parseSourcesConfig(text, file)
}

async function readSourcesText(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw new CredproxyError('INVALID_FILE', `cannot read ${file}: ${(error as Error).message}`, { hint: 'Check the file permissions.' })
  }
}

export function parseSourcesConfig(text: string, file: string): SourcesConfig {
  const data = parseSourcesFile(text, file)
  const keys = new Map<string, SourceConfig>()
  const tokens = new Map<string, SourceConfig>()
  for (const [name, spec] of Object.entries(data.keys)) keys.set(name, { ...spec, name, kind: 'key' })
  for (const [name, spec] of Object.entries(data.tokens)) tokens.set(name, { ...spec, name, kind: 'token' })
  return { file, keys, tokens }
}

function parseSourcesFile(text: string, file: string): SourcesFile {
  if (Buffer.byteLength(text) > MAX_SOURCES_FILE_BYTES) {
    throw new CredproxyError('INVALID_FILE', `${file} is larger than ${MAX_SOURCES_FILE_BYTES} bytes`, { hint: 'It should only hold source declarations.' })
  }
  // json-file.ts never quotes the file's text (it may hold a command argument), only the position or the field.
  return parseJsonFile(text, file, SourcesFileSchema, {
    hint: (problem) =>
      problem.kind === 'syntax' ? 'Fix the file; dev-docs/sources.md shows the format with worked entries.' : 'Fix the field; dev-docs/sources.md shows the format with worked entries.',
  })
}

/** Add or replace one entry, keeping the others; written to a temporary file and renamed (0600). */
export async function writeSourceEntry(paths: CredproxyPaths, kind: 'key' | 'token', name: string, spec: Record<string, unknown>): Promise<string> {
  const file = sourcesFilePath(paths)
  const text = await readSourcesText(file)
  // The other entries are kept as written (no defaults filled in), once they are known to be valid.
  if (text !== null) parseSourcesFile(text, file)
  const raw: Record<string, unknown> = text === null ? {} : (JSON.parse(text) as Record<string, unknown>)
  const section = kind === 'key' ? 'keys' : 'tokens'
  const entries = { ...((raw[section] as Record<string, unknown> | undefined) ?? {}), [name]: spec }
  const next = { ...raw, [section]: entries }
  // Validate what we are about to write, so a bad entry fails here and not at the next session.
  const out = JSON.stringify(next, null, 2) + '\n'
  parseSourcesFile(out, file)
  await mkdir(paths.configDir, { recursive: true, mode: 0o700 })
  const tmp = `${file}.${process.pid}.tmp`
  await writeFile(tmp, out, { mode: 0o600 })
  await rename(tmp, file)
  return file
}
