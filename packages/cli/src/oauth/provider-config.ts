// OAuth provider configuration: <configDir>/providers.json, validated with zod.
// A file that does not parse is a fatal error naming the file and the field;
// a missing file means "no OAuth providers" (the caller decides what that implies).
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { PROVIDER_NAME_PATTERN } from '@credproxy/core'
import * as z from 'zod'
import { PROVIDERS_FILE_NAME, type CredproxyPaths } from '../paths.js'
import { CredproxyError } from '../errors.js'
import { parseJsonFile } from '../json-file.js'
import { exposedError } from './errors.js'

export { PROVIDERS_FILE_NAME }
/** RFC 8628 default when the server sends no `interval`. */
export const DEFAULT_DEVICE_POLL_INTERVAL_MS = 5_000
/** Largest providers.json we read; a config file is a few KiB. */
export const MAX_PROVIDERS_FILE_BYTES = 1_048_576

export type LoginFlowName = 'device_code' | 'pkce'

const HttpUrl = z.url({ protocol: /^https?$/ })

const ProviderSchema = z
  .strictObject({
    /** Discovery: <issuer>/.well-known/openid-configuration (or oauth-authorization-server). */
    issuer: HttpUrl.optional(),
    authorization_endpoint: HttpUrl.optional(),
    token_endpoint: HttpUrl.optional(),
    device_authorization_endpoint: HttpUrl.optional(),
    client_id: z.string().min(1).max(512),
    /** Confidential clients only; stays on the host. */
    client_secret: z.string().min(1).max(4096).optional(),
    scopes: z.array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'a scope has no spaces or quotes')).default([]),
    /** Allowed login flows, in order of preference (the first is used unless the user picks one). */
    flows: z.array(z.enum(['device_code', 'pkce'])).min(1).default(['device_code', 'pkce']),
    /** Fixed loopback port for the PKCE redirect (some providers register an exact redirect URI). */
    redirect_port: z.number().int().min(1).max(65_535).optional(),
    /** Device-flow poll interval when the server sends none (ms). */
    poll_interval_ms: z.number().int().min(10).max(60_000).optional(),
    /** Extra authorization request parameters (e.g. audience). */
    authorization_params: z.record(z.string(), z.string()).optional(),
  })
  .superRefine((value, ctx) => {
    if (value.issuer === undefined && value.token_endpoint === undefined) {
      ctx.addIssue({ code: 'custom', path: ['issuer'], message: 'give either issuer (discovery) or token_endpoint' })
    }
    if (value.issuer === undefined && value.flows.includes('pkce') && value.authorization_endpoint === undefined) {
      ctx.addIssue({ code: 'custom', path: ['authorization_endpoint'], message: 'the pkce flow needs authorization_endpoint (or issuer)' })
    }
    if (value.issuer === undefined && value.flows.includes('device_code') && value.device_authorization_endpoint === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['device_authorization_endpoint'],
        message: 'the device_code flow needs device_authorization_endpoint (or issuer)',
      })
    }
  })

export const ProvidersFileSchema = z.strictObject({
  providers: z.record(z.string().regex(PROVIDER_NAME_PATTERN, 'provider names match [a-zA-Z0-9._@-]{1,64}'), ProviderSchema),
})

export type ProviderConfig = z.infer<typeof ProviderSchema> & { name: string }

export interface ProvidersConfig {
  file: string
  providers: Map<string, ProviderConfig>
}

export function providersFilePath(paths: CredproxyPaths): string {
  return join(paths.configDir, PROVIDERS_FILE_NAME)
}

/** null when the file does not exist; a CredproxyError naming the file and field when it is invalid. */
export async function loadProvidersConfig(paths: CredproxyPaths): Promise<ProvidersConfig | null> {
  const file = providersFilePath(paths)
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw new CredproxyError('FAILED', `cannot read ${file}: ${(error as Error).message}`, { hint: 'Check the file permissions.' })
  }
  return parseProvidersConfig(text, file)
}

export function parseProvidersConfig(text: string, file: string): ProvidersConfig {
  if (Buffer.byteLength(text) > MAX_PROVIDERS_FILE_BYTES) {
    throw new CredproxyError('FAILED', `${file} is larger than ${MAX_PROVIDERS_FILE_BYTES} bytes`, { hint: 'It should only hold provider settings.' })
  }
  const data = parseJsonFile(text, file, ProvidersFileSchema, {
    hint: (problem) => `Fix the ${problem.kind === 'syntax' ? 'file' : 'field'}; \`credproxy help oauth\` shows the format with a worked example.`,
  })
  const providers = new Map<string, ProviderConfig>()
  for (const [name, config] of Object.entries(data.providers)) providers.set(name, { ...config, name })
  return { file, providers }
}

/** The error for `credproxy auth login X` when X is not in providers.json. */
export function providerNotConfigured(provider: string, file: string): CredproxyError {
  const example = JSON.stringify({ providers: { [provider]: { issuer: 'https://login.example.com', client_id: 'YOUR_CLIENT_ID', scopes: ['offline_access'] } } })
  return new CredproxyError(
    'NOT_FOUND',
    `no OAuth provider '${provider}' is configured on this host`,
    { hint: `Add it to ${file}, for example: ${example} (\`credproxy help oauth\` has a worked GitHub example)` },
  )
}

/** The configuration of an OAuth provider, or PROVIDER_NOT_CONFIGURED naming the file to edit. */
export function configuredProvider(config: ProvidersConfig, name: string): ProviderConfig {
  const provider = config.providers.get(name)
  if (provider === undefined) {
    throw exposedError('PROVIDER_NOT_CONFIGURED', `no OAuth provider '${name}' is configured on the host; add it to providers.json in the host's credproxy config directory`)
  }
  return provider
}
