// `credproxy auth import|status|logout` (and `login`, from auth-login.ts): OAuth
// tokens per provider and bucket. Output never carries a token, not even a prefix.
import { parseArgs } from 'node:util'
import { optionError } from './parse-options.js'
import { DEFAULT_BUCKET, isProviderName, BUCKET_NAME_PATTERN, OAuthTokenSchema, type OAuthToken } from '@credproxy/core'
import { CliError, UsageError, writeLine, type CliIO, type Command } from '../cli-io.js'
import { EXIT } from '../exit-codes.js'
import { readAllStdin } from './secret-input.js'
import { openCommandStores } from './stores.js'

export interface AuthSubcommand {
  /** One line for `credproxy auth --help`. */
  usage: string
  /** Full `credproxy auth SUB --help` text, with examples. */
  help: string
  run(args: string[], io: CliIO): Promise<number>
}

const WHERE = `On the host this works on the OS keyring (or encrypted files); inside
\`credproxy run\` it goes through the broker, for what the session was granted.`

/** The auth subcommands; `login` lives in auth-login.ts (OAuth flows) and is loaded on use. */
export const AUTH_SUBCOMMANDS: Record<string, AuthSubcommand> = {
  login: {
    usage: 'login PROVIDER [--bucket B] [--flow device|pkce] [--no-browser]   log in with OAuth',
    help: `Usage: credproxy auth login PROVIDER [--bucket B] [--flow device|pkce] [--no-browser]

Log in to PROVIDER (configured in providers.json on the host; \`credproxy help
oauth\` shows how) and store the token on the host. Prints where to go and the
code to enter, then waits.
Inside \`credproxy run --grant PROVIDER\` the host runs the flow (the sandbox
needs no network) and keeps the refresh token; the sandbox gets none.

Options:
  --bucket B            store the login under bucket B (default: ${DEFAULT_BUCKET})
  --flow device|pkce    choose the flow (host only; default: the first in providers.json)
  --no-browser          print the URL instead of opening a browser (pkce)

Examples:
  credproxy auth login github
  credproxy auth login gemini --bucket work --flow device
  credproxy run --grant github -- credproxy auth login github`,
    run: (args, io) => import('./auth-login.js').then((m) => m.runLogin(args, io)),
  },
  status: {
    usage: 'status [PROVIDER] [--json]     providers, buckets, expiry and backend',
    help: `Usage: credproxy auth status [PROVIDER] [--json]

List the stored logins: provider, bucket, expiry, and whether a refresh token
is kept. Never prints a token.
${WHERE}

Examples:
  credproxy auth status
  credproxy auth status anthropic --json`,
    run: runStatus,
  },
  import: {
    usage: 'import PROVIDER [--bucket B]   store a token JSON read from stdin',
    help: `Usage: credproxy auth import PROVIDER [--bucket B] < token.json

Store a token read from stdin as JSON: {"access_token", "token_type", "expiry"
(unix seconds) or "expires_in" (seconds from now), optional "refresh_token",
"scope", extras}. Inside a sandbox it needs \`credproxy run --allow-save\`.

Examples:
  credproxy auth import anthropic < token.json
  credproxy auth import github --bucket work < work-token.json`,
    run: runImport,
  },
  logout: {
    usage: 'logout PROVIDER [--bucket B]   remove a stored token',
    help: `Usage: credproxy auth logout PROVIDER [--bucket B]

Remove the stored login of PROVIDER (bucket default: ${DEFAULT_BUCKET}). Exit 3 when
there was none. Inside a sandbox it needs \`credproxy run --allow-save\`.

Examples:
  credproxy auth logout anthropic
  credproxy auth logout github --bucket work`,
    run: runLogout,
  },
}

function help(): string {
  return `Usage: credproxy auth <subcommand> [options]

OAuth tokens per provider and bucket (bucket default: ${DEFAULT_BUCKET}), kept in
the OS keyring or encrypted files on the host. Nothing here prints a token.
${WHERE}

Subcommands:
${Object.values(AUTH_SUBCOMMANDS)
  .map((sub) => `  ${sub.usage}`)
  .join('\n')}

Run \`credproxy auth SUBCOMMAND --help\` for one subcommand's options.

Examples:
  credproxy auth login github
  credproxy auth status
  credproxy auth import anthropic < token.json
  credproxy auth logout anthropic --bucket work`
}

function parse(args: string[], sub: string, options: { json?: boolean; bucket?: boolean }) {
  try {
    return parseArgs({
      args,
      strict: true,
      allowPositionals: true,
      options: {
        ...(options.json === true ? { json: { type: 'boolean' as const } } : {}),
        ...(options.bucket === true ? { bucket: { type: 'string' as const, short: 'b' } } : {}),
      },
    })
  } catch (error) {
    throw optionError(`auth ${sub}`, { bucket: { type: 'string' }, json: { type: 'boolean' } }, error)
  }
}

function provider(positionals: string[], sub: string, required: true): string
function provider(positionals: string[], sub: string, required: false): string | undefined
function provider(positionals: string[], sub: string, required: boolean): string | undefined {
  if (positionals.length > 1) throw new UsageError(`auth ${sub} takes one PROVIDER`, `Example: credproxy auth ${sub} anthropic`)
  const name = positionals[0]
  if (name === undefined) {
    if (required) throw new UsageError(`auth ${sub} needs a PROVIDER`, `Example: credproxy auth ${sub} anthropic`)
    return undefined
  }
  if (!isProviderName(name)) {
    throw new UsageError(`'${name}' is not a valid provider name`, 'Use 1-64 characters from a-z A-Z 0-9 . _ @ -')
  }
  return name
}

function bucket(value: string | boolean | undefined): string {
  if (typeof value !== 'string') return DEFAULT_BUCKET
  if (!BUCKET_NAME_PATTERN.test(value)) {
    throw new UsageError(`'${value}' is not a valid bucket name`, 'Use 1-64 characters from a-z A-Z 0-9 . _ @ -')
  }
  return value
}

/** "in 42 min", "3 h ago": coarse on purpose, status is for people. */
export function relativeTime(seconds: number): string {
  const abs = Math.abs(seconds)
  const text =
    abs < 90 ? `${Math.round(abs)} s` : abs < 5400 ? `${Math.round(abs / 60)} min` : abs < 172_800 ? `${Math.round(abs / 3600)} h` : `${Math.round(abs / 86_400)} d`
  return seconds >= 0 ? `in ${text}` : `${text} ago`
}

/** Validate piped token JSON; errors name the field, never the value. */
export function parseImportedToken(text: string, nowMs: number = Date.now()): OAuthToken {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    throw new UsageError('stdin is not valid JSON', 'Pipe a token object: credproxy auth import PROVIDER < token.json')
  }
  if (typeof json === 'object' && json !== null && !Array.isArray(json)) {
    const record = json as Record<string, unknown>
    if (record['expiry'] === undefined && typeof record['expires_in'] === 'number') {
      const { expires_in: expiresIn, ...rest } = record
      json = { ...rest, expiry: Math.floor(nowMs / 1000 + (expiresIn as number)) }
    }
  }
  const parsed = OAuthTokenSchema.safeParse(json)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    const field = issue?.path.join('.') || '(the whole input)'
    throw new UsageError(
      `token field '${field}' is invalid: ${issue?.message ?? 'bad value'}`,
      'A token needs access_token, token_type and expiry (unix seconds) or expires_in.',
    )
  }
  return parsed.data
}

async function runImport(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse(args, 'import', { bucket: true })
  const name = provider(positionals, 'import', true)
  const b = bucket(values.bucket)
  if (io.stdin.isTTY === true) {
    throw new UsageError('auth import reads the token JSON from stdin', `Pipe it: credproxy auth import ${name} < token.json`)
  }
  const token = parseImportedToken(await readAllStdin(io, 'the token JSON'))
  const stores = await openCommandStores(io)
  await stores.tokens.saveToken(name, token, b)
  const expiry = relativeTime(token.expiry - Date.now() / 1000)
  const refresh = token.refresh_token === undefined ? 'no refresh token' : 'refresh token stored'
  writeLine(io.stderr, `Imported token for ${name}/${b} (expires ${expiry}, ${refresh}, ${stores.backend}).`)
  return EXIT.OK
}

interface BucketStatus {
  bucket: string
  expiry?: number
  expiresInSeconds?: number
  expired?: boolean
  refreshable?: boolean
  /** Why the stored token could not be read (a path or keyring entry, never a value). */
  error?: string
}

async function runStatus(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse(args, 'status', { json: true })
  const only = provider(positionals, 'status', false)
  const stores = await openCommandStores(io)
  const providers = only === undefined ? await stores.tokens.listProviders() : [only]
  const nowS = Date.now() / 1000
  const report: { provider: string; buckets: BucketStatus[] }[] = []
  let unreadable = false
  for (const p of providers) {
    const buckets: BucketStatus[] = []
    for (const b of await stores.tokens.listBuckets(p)) {
      try {
        const token = await stores.tokens.getToken(p, b)
        if (token === null) continue
        const expiresInSeconds = Math.round(token.expiry - nowS)
        // Through the broker the refresh token is stripped: whether it exists is the host's business.
        const refreshable = stores.backend === 'broker' ? {} : { refreshable: token.refresh_token !== undefined }
        buckets.push({ bucket: b, expiry: token.expiry, expiresInSeconds, expired: expiresInSeconds <= 0, ...refreshable })
      } catch (error) {
        if (!(error instanceof CliError)) throw error
        unreadable = true
        buckets.push({ bucket: b, error: error.message })
      }
    }
    if (buckets.length > 0) report.push({ provider: p, buckets })
  }
  if (only !== undefined && report.length === 0) {
    const next = stores.backend === 'broker' ? `Log in: credproxy auth login ${only}` : `Log in or store one: credproxy auth login ${only}, or credproxy auth import ${only} < token.json`
    throw new CliError(`no tokens stored for ${only}`, next, EXIT.NOT_FOUND)
  }
  if (values.json === true) {
    writeLine(io.stdout, JSON.stringify({ backend: stores.backend, providers: report }))
  } else {
    writeLine(io.stdout, `Backend: ${stores.backend}`)
    if (report.length === 0) {
      const inside = stores.backend === 'broker'
      writeLine(io.stdout, inside ? 'No tokens for what this sandbox was granted.' : 'No tokens stored.')
      writeLine(io.stdout, `  Log in with: credproxy auth login PROVIDER${inside ? '' : ' (or import one: credproxy auth import PROVIDER < token.json)'}`)
    }
    for (const entry of report) {
      writeLine(io.stdout, entry.provider)
      for (const s of entry.buckets) {
        const state =
          s.error !== undefined
            ? `unreadable: ${s.error}`
            : `${s.expired === true ? 'expired' : 'expires'} ${relativeTime(s.expiresInSeconds ?? 0)}, ${s.refreshable === undefined ? 'refreshed by the host' : s.refreshable ? 'refreshable' : 'no refresh token'}`
        writeLine(io.stdout, `  ${s.bucket.padEnd(16)} ${state}`)
      }
    }
  }
  return unreadable ? EXIT.FAILURE : EXIT.OK
}

async function runLogout(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse(args, 'logout', { bucket: true })
  const name = provider(positionals, 'logout', true)
  const b = bucket(values.bucket)
  const stores = await openCommandStores(io)
  if (!(await stores.tokens.listBuckets(name)).includes(b)) {
    throw new CliError(`no token stored for ${name}/${b}`, `See what is stored: credproxy auth status`, EXIT.NOT_FOUND)
  }
  await stores.tokens.removeToken(name, b)
  writeLine(io.stderr, `Logged out of ${name}/${b}.`)
  return EXIT.OK
}

async function run(args: string[], io: CliIO): Promise<number> {
  const [sub, ...rest] = args
  const entry = sub !== undefined && Object.hasOwn(AUTH_SUBCOMMANDS, sub) ? AUTH_SUBCOMMANDS[sub] : undefined
  if (entry === undefined) {
    throw new UsageError(
      sub === undefined ? 'auth needs a subcommand' : `unknown auth subcommand '${sub}'`,
      `Run \`credproxy auth --help\`: ${Object.keys(AUTH_SUBCOMMANDS).join(', ')}.`,
    )
  }
  return entry.run(rest, io)
}

export const command: Command = {
  name: 'auth',
  get help() {
    return help()
  },
  helpFor(args) {
    const sub = args[0]
    return sub !== undefined && Object.hasOwn(AUTH_SUBCOMMANDS, sub) ? AUTH_SUBCOMMANDS[sub]?.help : undefined
  },
  run,
}
