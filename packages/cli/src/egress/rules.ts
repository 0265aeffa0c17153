// Egress rules: <configDir>/egress.json (zod) merged over the built-in presets.
// A rule names the hosts it covers, the host credential it injects and how.
// A file that does not parse is a fatal error naming the file and the field.
import { readFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { join } from 'node:path'
import { KEY_NAME_PATTERN, PROVIDER_NAME_PATTERN } from '@credproxy/core'
// The namespace import: esbuild tree-shakes it (the named `z` export pulls in all of zod, locales included).
import * as z from 'zod'
import { CredproxyError } from '../errors.js'
import { parseJsonFile } from '../json-file.js'
import { EGRESS_PRESETS } from './presets.js'

export const EGRESS_FILE_NAME = 'egress.json'
/** Largest egress.json we read; a rules file is a few KiB. */
export const MAX_EGRESS_FILE_BYTES = 1_048_576
/** Placeholders carry at least 128 random bits: 22 base62 characters hold 130. */
export const MIN_PLACEHOLDER_RANDOM_CHARS = 22
/** Marker every placeholder carries, so an unknown (stale, foreign) placeholder is recognised and refused. */
export const PLACEHOLDER_MARKER = 'cpxph0'
export const MAX_PLACEHOLDER_LENGTH = 256

export const RULE_NAME_PATTERN = /^[a-zA-Z0-9._-]{1,64}$/
// Exact DNS name, IP literal, or `*.suffix` (one leading wildcard label, matching one or more labels).
const HOST_PATTERN = /^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/
const HEADER_NAME_PATTERN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/

const Host = z
  .string()
  .transform((value) => value.toLowerCase())
  .refine((value) => HOST_PATTERN.test(value) || isIP(value) !== 0, 'a host is a DNS name, an IP address or *.suffix')

const HeaderInject = z.strictObject({
  header: z
    .string()
    .regex(HEADER_NAME_PATTERN, 'a header name is a token (letters, digits, -)')
    .transform((value) => value.toLowerCase())
    .refine((value) => !['host', 'content-length', 'transfer-encoding', 'connection', 'upgrade'].includes(value), 'this header cannot carry a credential'),
  format: z
    .string()
    .max(256)
    .refine((value) => value.split('{}').length === 2, 'format holds {} exactly once (where the secret goes)')
    .refine((value) => !/[\r\n]/.test(value), 'format holds no line break')
    .default('{}'),
})
const BasicInject = z.strictObject({
  /** Basic auth with the secret as password; without `user`, the client's own Basic user is kept (no preemptive injection). */
  basic: z.strictObject({ user: z.string().min(1).max(256).refine((value) => !value.includes(':'), 'a Basic user has no colon').optional() }),
})
/** No preemptive injection: placeholders are still swapped (e.g. a registry that takes a client-held exchanged token). */
const SwapOnlyInject = z.strictObject({ swapOnly: z.literal(true) })
const QueryInject = z.strictObject({ query: z.string().min(1).max(128).regex(/^[A-Za-z0-9._~-]+$/, 'a query parameter name is URL-safe') })

const Credential = z.union([
  z.strictObject({ key: z.string().regex(KEY_NAME_PATTERN, 'key names match [a-zA-Z0-9._-]{1,64}') }),
  z.strictObject({
    oauth: z.string().regex(PROVIDER_NAME_PATTERN, 'provider names match [a-zA-Z0-9._@-]{1,64}'),
    bucket: z.string().regex(PROVIDER_NAME_PATTERN, 'bucket names match [a-zA-Z0-9._@-]{1,64}').default('default'),
  }),
])

const HostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'upstream is host:port (e.g. 127.0.0.1:8443)')
  .refine((value) => {
    const port = Number(value.slice(value.lastIndexOf(':') + 1))
    return port >= 1 && port <= 65_535
  }, 'the port is 1-65535')

/** An environment variable name (set inside the sandbox: never one that changes how programs load). */
const EnvName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'env var names match [A-Za-z_][A-Za-z0-9_]*')
  .refine((name) => !/^(PATH|HOME|LD_.*|NODE_OPTIONS|NODE_EXTRA_CA_CERTS|SSL_CERT_FILE|HTTPS?_PROXY|NO_PROXY|CREDPROXY_.*)$/i.test(name), 'this variable is set by credproxy itself')

export const EgressRuleSchema = z
  .strictObject({
    name: z.string().regex(RULE_NAME_PATTERN, 'rule names match [a-zA-Z0-9._-]{1,64}'),
    hosts: z.array(Host).min(1).max(64),
    credential: Credential,
    inject: z.union([HeaderInject, BasicInject, QueryInject, SwapOnlyInject]),
    /** Per-host injection override (e.g. Basic for git on github.com, Bearer on api.github.com). */
    hostInject: z.record(Host, z.union([HeaderInject, BasicInject, QueryInject, SwapOnlyInject])).optional(),
    route: z
      .string()
      .regex(/^\/[A-Za-z0-9._~-]{1,64}$/, 'a route is one path segment such as /github')
      .optional(),
    upstream: HostPort.optional(),
    ca: z.string().min(1).max(4096).optional(),
    clientCert: z
      .strictObject({
        cert: z.string().regex(KEY_NAME_PATTERN, 'key names match [a-zA-Z0-9._-]{1,64}'),
        key: z.string().regex(KEY_NAME_PATTERN, 'key names match [a-zA-Z0-9._-]{1,64}'),
      })
      .optional(),
    placeholder: z
      .strictObject({
        prefix: z.string().max(64).regex(/^[A-Za-z0-9._-]*$/, 'a placeholder prefix is letters, digits, . _ -').default(''),
        length: z.number().int().max(MAX_PLACEHOLDER_LENGTH).optional(),
      })
      .optional(),
    /** Env vars set to the placeholder inside `credproxy run --egress` (e.g. ANTHROPIC_API_KEY, GH_TOKEN). */
    env: z.array(EnvName).max(16).optional(),
    /** Env var set to the reverse route's URL inside `credproxy run --egress` (e.g. ANTHROPIC_BASE_URL); needs `route`. */
    baseUrlEnv: EnvName.optional(),
    rateLimit: z
      .strictObject({ perSecond: z.number().positive().max(100_000), burst: z.number().int().min(1).max(1_000_000).optional() })
      .optional(),
  })
  .superRefine((rule, ctx) => {
    const prefix = rule.placeholder?.prefix ?? ''
    const length = rule.placeholder?.length
    const minimum = prefix.length + PLACEHOLDER_MARKER.length + MIN_PLACEHOLDER_RANDOM_CHARS
    if (length !== undefined && length < minimum) {
      ctx.addIssue({
        code: 'custom',
        path: ['placeholder', 'length'],
        message: `length must be at least ${minimum} (prefix + marker + 128 random bits)`,
      })
    }
    if (rule.baseUrlEnv !== undefined && rule.route === undefined) {
      ctx.addIssue({ code: 'custom', path: ['baseUrlEnv'], message: 'baseUrlEnv needs a route (the URL it names)' })
    }
    if (rule.route !== undefined && rule.hosts[0]?.startsWith('*.')) {
      ctx.addIssue({ code: 'custom', path: ['hosts', 0], message: 'a rule with a route needs an exact first host (the route target)' })
    }
  })

export type EgressRuleInput = z.input<typeof EgressRuleSchema>
export type EgressRule = z.output<typeof EgressRuleSchema>
export type InjectSpec = EgressRule['inject']

export const EgressFileSchema = z.strictObject({
  /** Preset names to leave out (all presets are available by default). */
  disablePresets: z.array(z.string().regex(RULE_NAME_PATTERN)).optional(),
  rules: z.array(EgressRuleSchema).default([]),
})

/** true when `host` (lower case, no port) is covered by `pattern` (exact or `*.suffix`). */
export function hostMatches(pattern: string, host: string): boolean {
  if (pattern.startsWith('*.')) return host.endsWith(pattern.slice(1)) && host.length > pattern.length - 1
  return pattern === host
}

/** The first rule in `rules` whose hosts cover `host` and that is in `granted`. */
export function findRule(rules: readonly EgressRule[], granted: ReadonlySet<string>, host: string): EgressRule | undefined {
  for (const rule of rules) {
    if (granted.has(rule.name) && rule.hosts.some((pattern) => hostMatches(pattern, host))) return rule
  }
  return undefined
}

/** How a rule injects on one host: the per-host override, else the rule's default. */
export function injectFor(rule: EgressRule, host: string): InjectSpec {
  if (rule.hostInject !== undefined) {
    for (const [pattern, spec] of Object.entries(rule.hostInject)) if (hostMatches(pattern, host)) return spec
  }
  return rule.inject
}

/** The presets parsed (they are checked by the same schema as user rules). */
export function presetRules(): EgressRule[] {
  return Object.values(EGRESS_PRESETS).map((input) => EgressRuleSchema.parse(input))
}

/**
 * Presets plus <configDir>/egress.json: a user rule with a preset's name replaces the preset.
 * A missing file means presets only; an invalid one is a CredproxyError (INVALID_FILE) naming the file and field.
 */
export async function loadEgressRules(configDir: string): Promise<EgressRule[]> {
  const file = join(configDir, EGRESS_FILE_NAME)
  let text: string | null = null
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new CredproxyError('INVALID_FILE', `cannot read ${file}: ${(error as Error).message}`, { hint: 'Check the file permissions.' })
    }
  }
  return text === null ? presetRules() : parseEgressRules(text, file)
}

export function parseEgressRules(text: string, file: string): EgressRule[] {
  if (Buffer.byteLength(text) > MAX_EGRESS_FILE_BYTES) {
    throw new CredproxyError('INVALID_FILE', `${file} is larger than ${MAX_EGRESS_FILE_BYTES} bytes`, { hint: 'It should only hold egress rules.' })
  }
  const data = parseJsonFile(text, file, EgressFileSchema, {
    hint: (problem) => (problem.kind === 'syntax' ? 'Fix the file; see dev-docs/egress.md for the format.' : 'Fix the field; see dev-docs/egress.md for the format.'),
  })
  const disabled = new Set(data.disablePresets ?? [])
  // User rules first: when two granted rules cover one host, the user's own rule wins over a preset.
  const byName = new Map<string, EgressRule>()
  for (const [index, rule] of data.rules.entries()) {
    if (byName.has(rule.name)) {
      throw new CredproxyError('INVALID_FILE', `${file}: invalid field rules.${index}.name: rule ${rule.name} is defined twice`, { hint: 'Give each rule its own name.' })
    }
    byName.set(rule.name, rule)
  }
  for (const rule of presetRules()) if (!disabled.has(rule.name) && !byName.has(rule.name)) byName.set(rule.name, rule)
  const routes = new Map<string, string>()
  for (const rule of byName.values()) {
    if (rule.route === undefined) continue
    const other = routes.get(rule.route)
    if (other !== undefined) {
      throw new CredproxyError('INVALID_FILE', `${file}: route ${rule.route} is used by rules ${other} and ${rule.name}`, { hint: 'Give each rule its own route.' })
    }
    routes.set(rule.route, rule.name)
  }
  return [...byName.values()]
}
