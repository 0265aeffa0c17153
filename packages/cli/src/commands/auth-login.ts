// `credproxy auth login PROVIDER`: on the host, runs the OAuth flow here and stores
// the token; inside a sandbox (CREDPROXY_SOCKET set), asks the host broker to run
// it. Both go through ProxyOAuthAdapter, so the user sees the same thing. Never
// prints a token.
import { parseArgs } from 'node:util'
import { optionError } from './parse-options.js'
import {
  BUCKET_NAME_PATTERN,
  createOAuthAdapter,
  DEFAULT_BUCKET,
  getSharedClient,
  isProviderName,
  isProxyMode,
  ProxyError,
  ProxyOAuthAdapter,
  type OAuthToken,
} from '@credproxy/core'
import { CliError, UsageError, writeLine, type CliIO } from '../cli-io.js'
import { EXIT } from '../exit-codes.js'
import { resolvePaths } from '../paths.js'
import { classifyOAuthError, describeFailure } from '../oauth/classify-error.js'
import { createOAuthBroker } from '../oauth/host-oauth-broker.js'
import { createLocalRequester } from '../oauth/local-requester.js'
import { createTerminalLoginUI } from '../oauth/login-ui.js'
import { openBrowser } from '../oauth/open-browser.js'
import { loadProvidersConfig, providerNotConfigured, providersFilePath, type LoginFlowName } from '../oauth/provider-config.js'
import { openHostStores } from '../storage/index.js'
import { logLineTo } from '../escape.js'

interface LoginArgs {
  provider: string
  bucket: string
  flow: LoginFlowName | undefined
  browser: boolean
}

function parseLoginArgs(args: string[]): LoginArgs {
  let parsed
  try {
    parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: true,
      options: {
        bucket: { type: 'string', short: 'b' },
        flow: { type: 'string' },
        'no-browser': { type: 'boolean' },
      },
    })
  } catch (error) {
    throw optionError('auth login', { bucket: { type: 'string' }, flow: { type: 'string' }, 'no-browser': { type: 'boolean' } }, error)
  }
  const [provider, ...rest] = parsed.positionals
  if (provider === undefined || rest.length > 0) {
    throw new UsageError('auth login takes one PROVIDER', 'Example: credproxy auth login github')
  }
  if (!isProviderName(provider)) throw new UsageError(`'${provider}' is not a valid provider name`, 'Use 1-64 characters from a-z A-Z 0-9 . _ @ -')
  const bucket = parsed.values.bucket ?? DEFAULT_BUCKET
  if (!BUCKET_NAME_PATTERN.test(bucket)) throw new UsageError(`'${bucket}' is not a valid bucket name`, 'Use 1-64 characters from a-z A-Z 0-9 . _ @ -')
  const flowArg = parsed.values.flow
  if (flowArg !== undefined && flowArg !== 'device' && flowArg !== 'pkce') {
    throw new UsageError(`--flow must be device or pkce, not '${flowArg}'`, 'Example: credproxy auth login github --flow device')
  }
  const flow = flowArg === undefined ? undefined : flowArg === 'device' ? 'device_code' : 'pkce'
  return { provider, bucket, flow, browser: parsed.values['no-browser'] !== true }
}

export async function runLogin(args: string[], io: CliIO): Promise<number> {
  const login = parseLoginArgs(args)
  const token = isProxyMode(io.env) ? await loginThroughBroker(login, io) : await loginOnHost(login, io)
  const where = login.bucket === DEFAULT_BUCKET ? login.provider : `${login.provider} (bucket ${login.bucket})`
  writeLine(io.stdout, `Logged in to ${where}; the token is stored on the host and expires ${new Date(token.expiry * 1000).toISOString()}.`)
  return EXIT.OK
}

async function loginOnHost(login: LoginArgs, io: CliIO): Promise<OAuthToken> {
  const paths = resolvePaths(io.env)
  const config = await loadProvidersConfig(paths)
  if (config === null) throw providerNotConfigured(login.provider, providersFilePath(paths))
  const provider = config.providers.get(login.provider)
  if (provider === undefined) throw providerNotConfigured(login.provider, config.file)
  if (login.flow !== undefined && !provider.flows.includes(login.flow)) {
    throw new UsageError(
      `the ${login.flow} flow is not allowed for ${login.provider}`,
      `Allowed in ${config.file}: ${provider.flows.join(', ')}`,
    )
  }
  const stores = await openHostStores({ env: io.env, paths, log: logLineTo(io.stderr) })
  const broker = await createOAuthBroker({ stores, env: io.env, paths, providers: config, schedule: false })
  if (broker === null) throw providerNotConfigured(login.provider, config.file)
  try {
    const ui = createTerminalLoginUI(io, {
      allowPaste: true,
      ...(login.browser ? { openUrl: (url: string) => openBrowser(url, io.env) } : {}),
    })
    const adapter = new ProxyOAuthAdapter(createLocalRequester(broker, login.flow === undefined ? {} : { flow: login.flow }), ui)
    return await adapter.login(login.provider, login.bucket).catch((error: unknown) => {
      throw explain(error, login, 'host')
    })
  } finally {
    await broker.close()
  }
}

async function loginThroughBroker(login: LoginArgs, io: CliIO): Promise<OAuthToken> {
  if (login.flow !== undefined) {
    throw new UsageError('--flow cannot be chosen inside a sandbox', 'The host uses the first flow listed for the provider in its providers.json.')
  }
  const adapter = createOAuthAdapter({ env: io.env, ui: createTerminalLoginUI(io, { allowPaste: true }) })
  try {
    return await adapter.login(login.provider, login.bucket)
  } catch (error) {
    // The handshake told the client its session id: the host command below needs it.
    throw explain(error, login, 'sandbox', getSharedClient(io.env).session)
  } finally {
    getSharedClient(io.env).close()
  }
}

/** Turn the codes a user can act on into a message plus the next command. */
function explain(error: unknown, login: LoginArgs, side: 'host' | 'sandbox', session?: string): unknown {
  if (!(error instanceof ProxyError)) return error
  const again = `Run \`credproxy auth login ${login.provider}${login.bucket === DEFAULT_BUCKET ? '' : ` --bucket ${login.bucket}`}\` to try again.`
  switch (error.code) {
    case 'ACCESS_DENIED':
      return new CliError(`the login to ${login.provider} was denied`, again, EXIT.AUTH_REQUIRED)
    case 'SESSION_EXPIRED':
      return new CliError(`the login to ${login.provider} expired before it was approved`, again, EXIT.AUTH_REQUIRED)
    case 'PROVIDER_NOT_CONFIGURED':
      return new CliError(
        `no OAuth provider '${login.provider}' is configured on the host`,
        'On the host, add it to providers.json in the credproxy config directory: `credproxy help oauth` shows how.',
        EXIT.NOT_FOUND,
      )
    case 'NOT_GRANTED': {
      // The broker's message names the missing grant, then the host command with this session's id: keep both.
      const cut = error.message.indexOf('; ')
      if (cut > 0 && error.message.includes('`credproxy grant ', cut)) {
        const next = error.message.slice(cut + 2)
        return new CliError(error.message.slice(0, cut), `${next.charAt(0).toUpperCase()}${next.slice(1)}.`, EXIT.DENIED)
      }
      return new CliError(
        `this sandbox was not granted ${login.provider}`,
        `On the host, run \`credproxy grant --session ${session ?? 'ID'} --provider ${login.provider} --capability login\` (\`credproxy sessions\` lists the ids), or restart it with --grant ${login.provider}.`,
        EXIT.DENIED,
      )
    }
    case 'EXCHANGE_FAILED': {
      // On the host the server's answer (an OAuth error code, never a value) is at hand; inside it stays in the host log.
      const why = side === 'host' && error.cause !== undefined ? ` (${describeFailure(classifyOAuthError(error.cause))})` : ''
      return new CliError(
        `the authorization server did not accept the pasted code${why}`,
        `Paste the whole redirect URL from the browser's address bar, once, within a few minutes. ${again}`,
        EXIT.AUTH_REQUIRED,
      )
    }
    case 'FLOW_INITIATION_FAILED':
      return new CliError(
        `could not start the login to ${login.provider}: the authorization server did not answer as expected`,
        side === 'host' ? 'Check the issuer or endpoints in providers.json and your network.' : 'See the broker log on the host.',
        EXIT.UNAVAILABLE,
      )
    default:
      return error
  }
}
