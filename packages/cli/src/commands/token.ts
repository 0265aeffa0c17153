// `credproxy token PROVIDER [--bucket B]`: print the access token only, for
// scripts (`Authorization: Bearer $(credproxy token github)`). Inside a sandbox it
// comes through the broker (refreshed there); on the host it is refreshed first
// when near expiry and a provider is configured.
import { parseArgs } from 'node:util'
import { optionError } from './parse-options.js'
import {
  createTokenStore,
  DEFAULT_BUCKET,
  isBucketName,
  isProviderName,
  isProxyMode,
  secondsUntilExpiry,
  type OAuthToken,
} from '@credproxy/core/client'
import { CliError, UsageError, writeLine, type CliIO, type Command } from '../cli-io.js'
import { EXIT } from '../exit-codes.js'
import { logLineTo } from '../escape.js'

const help = `Usage: credproxy token PROVIDER [--bucket B] [--json]

Print PROVIDER's access token (and nothing else) on stdout, for scripts. Works
the same on the host and inside \`credproxy run --grant PROVIDER\`. The refresh
token is never printed.

Options:
  --bucket B   which login of PROVIDER (default: default)
  --json       print {"access_token","token_type","expiry"} instead

Exit codes: 0 ok, 3 no token stored, 4 not granted to this sandbox,
5 expired and cannot be refreshed (log in again).

Examples:
  curl -H "Authorization: Bearer $(credproxy token github)" https://api.github.com/user
  credproxy token gemini --bucket work --json`

export function parseTokenArgs(args: readonly string[]): { provider: string; bucket: string; json: boolean } {
  let parsed
  try {
    parsed = parseArgs({
      args: [...args],
      strict: true,
      allowPositionals: true,
      options: { bucket: { type: 'string' }, json: { type: 'boolean' } },
    })
  } catch (error) {
    throw optionError('token', { bucket: { type: 'string' }, json: { type: 'boolean' } }, error)
  }
  const [provider, ...extra] = parsed.positionals
  if (provider === undefined || extra.length > 0) throw new UsageError('expected exactly one PROVIDER', 'Example: credproxy token github')
  if (!isProviderName(provider)) throw new UsageError(`invalid provider name '${provider}'`, 'Provider names are 1-64 characters of letters, digits, . _ @ -.')
  const bucket = parsed.values.bucket ?? DEFAULT_BUCKET
  if (!isBucketName(bucket)) throw new UsageError(`invalid bucket name '${bucket}'`, 'Bucket names are 1-64 characters of letters, digits, . _ @ -.')
  return { provider, bucket, json: parsed.values.json === true }
}

async function fetchToken(provider: string, bucket: string, io: CliIO): Promise<OAuthToken | null> {
  if (isProxyMode(io.env)) return createTokenStore({ env: io.env }).getToken(provider, bucket)
  // Host-only code, loaded here so the in-sandbox path never reads it.
  const [{ openHostStores }, { createOAuthBroker }] = await Promise.all([import('../storage/index.js'), import('../oauth/host-oauth-broker.js')])
  const stores = await openHostStores({ env: io.env, log: logLineTo(io.stderr) })
  const oauth = await createOAuthBroker({ stores, env: io.env, schedule: false, log: logLineTo(io.stderr) })
  try {
    return oauth === null ? await stores.tokens.getToken(provider, bucket) : await oauth.getFreshToken(provider, bucket)
  } finally {
    await oauth?.close()
  }
}

export const command: Command = {
  name: 'token',
  help,
  async run(args, io) {
    const { provider, bucket, json } = parseTokenArgs(args)
    const token = await fetchToken(provider, bucket, io)
    const label = bucket === DEFAULT_BUCKET ? provider : `${provider} --bucket ${bucket}`
    if (token === null) {
      throw new CliError(`no token stored for ${label}`, `Log in first: credproxy auth login ${label}`, EXIT.NOT_FOUND)
    }
    if (secondsUntilExpiry(token) <= 0) {
      throw new CliError(`the token for ${label} has expired and could not be refreshed`, `Log in again: credproxy auth login ${label}`, EXIT.AUTH_REQUIRED)
    }
    if (json) {
      writeLine(io.stdout, JSON.stringify({ access_token: token.access_token, token_type: token.token_type, expiry: token.expiry }))
    } else {
      writeLine(io.stdout, token.access_token)
    }
    return EXIT.OK
  },
}
