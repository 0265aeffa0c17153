// `credproxy egress rules|test`: what egress rules exist (presets and egress.json),
// which credential each needs and whether the host holds it; and one request through
// a real egress proxy on the host, to check a credential before a long agent run.
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { connect as tlsConnect } from 'node:tls'
import { writeLine, type CliIO, type Command } from '../cli-io.js'
import { CredproxyError, UsageError } from '../errors.js'
import { EXIT } from '../exit-codes.js'
import { resolvePaths } from '../paths.js'
import { logLineTo } from '../escape.js'
import { EGRESS_PRESETS, loadEgressRules, type EgressRule } from '../egress/index.js'
import { parseOptions } from './parse-options.js'

/** How long `egress test` waits for the upstream's answer. */
export const EGRESS_TEST_TIMEOUT_MS = 20_000

const help = `Usage: credproxy egress rules [--json]
       credproxy egress test RULE [URL]

rules   list the egress rules a session can be granted (\`credproxy run --egress RULE\`):
        built-in presets and <config>/egress.json, their hosts, the host credential
        each injects and whether it is stored, and the variables set inside
test    send one GET through a real egress proxy on this host, with RULE granted,
        to URL (default: https://<the rule's first host>/), and print the status;
        nothing but the status and the proxy's refusal reason is shown

Examples:
  credproxy egress rules
  credproxy egress test github https://api.github.com/user`

function credentialText(rule: EgressRule): string {
  return 'key' in rule.credential ? `key ${rule.credential.key}` : `oauth ${rule.credential.oauth}:${rule.credential.bucket}`
}

interface RuleView {
  name: string
  source: 'preset' | 'egress.json'
  hosts: string[]
  credential: string
  stored: boolean
  env: string[]
  route?: string
}

async function describeRules(io: CliIO): Promise<RuleView[]> {
  const paths = resolvePaths(io.env)
  const rules = await loadEgressRules(paths.configDir)
  const { openHostStores } = await import('../storage/index.js')
  const stores = await openHostStores({ env: io.env, paths, log: logLineTo(io.stderr) })
  try {
    const views: RuleView[] = []
    for (const rule of rules) {
      const preset = EGRESS_PRESETS[rule.name]
      const stored = 'key' in rule.credential ? await stores.keys.hasKey(rule.credential.key) : (await stores.tokens.getToken(rule.credential.oauth, rule.credential.bucket)) !== null
      views.push({
        name: rule.name,
        source: preset !== undefined && JSON.stringify(preset.hosts) === JSON.stringify(rule.hosts) ? 'preset' : 'egress.json',
        hosts: rule.hosts,
        credential: credentialText(rule),
        stored,
        env: [...(rule.env ?? []), ...(rule.baseUrlEnv === undefined ? [] : [rule.baseUrlEnv])],
        ...(rule.route === undefined ? {} : { route: rule.route }),
      })
    }
    return views
  } finally {
    await stores.tokens.close?.()
  }
}

async function listRules(args: string[], io: CliIO): Promise<number> {
  const json = parseOptions('egress rules', args, { json: { type: 'boolean' } }).json === true
  const views = await describeRules(io)
  if (json) {
    writeLine(io.stdout, JSON.stringify(views, null, 2))
    return EXIT.OK
  }
  for (const view of views) {
    writeLine(io.stdout, `${view.name} (${view.source})`)
    writeLine(io.stdout, `  hosts:      ${view.hosts.join(', ')}`)
    writeLine(io.stdout, `  credential: ${view.credential} (${view.stored ? 'stored' : 'NOT stored: credproxy key set / auth login'})`)
    if (view.env.length > 0) writeLine(io.stdout, `  inside:     ${view.env.join(', ')}`)
    if (view.route !== undefined) writeLine(io.stdout, `  route:      ${view.route}`)
  }
  return EXIT.OK
}

/** One GET to url through the proxy at 127.0.0.1:port (CONNECT with the token), trusting caPem. */
export function getThroughProxy(url: URL, port: number, token: string, caPem: string): Promise<{ status: number; reason?: string }> {
  return new Promise((resolve, reject) => {
    const target = `${url.hostname}:${url.port === '' ? 443 : url.port}`
    const auth = `Basic ${Buffer.from(`credproxy:${token}`).toString('base64')}`
    const connect = httpRequest({ host: '127.0.0.1', port, method: 'CONNECT', path: target, headers: { host: target, 'proxy-authorization': auth }, timeout: EGRESS_TEST_TIMEOUT_MS })
    connect.once('timeout', () => connect.destroy(new Error('the egress proxy did not answer CONNECT in time')))
    connect.once('error', reject)
    connect.once('connect', (res, socket) => {
      if (res.statusCode !== 200) {
        socket.destroy()
        resolve({ status: res.statusCode ?? 0, reason: 'the egress proxy refused the CONNECT; credproxy audit says why' })
        return
      }
      const req = httpsRequest(url, {
        createConnection: () => tlsConnect({ socket, servername: url.hostname, ca: caPem }),
        timeout: EGRESS_TEST_TIMEOUT_MS,
        // No agent: Node would then take port 80 as the default and write Host with :443.
        headers: { host: url.host, 'user-agent': 'credproxy-egress-test' },
      })
      req.once('timeout', () => req.destroy(new Error(`${url.origin} did not answer in time`)))
      req.once('error', reject)
      req.once('response', (response) => {
        let body = ''
        response.setEncoding('utf8')
        response.on('data', (chunk: string) => {
          if (body.length < 512) body += chunk
        })
        response.once('end', () => {
          socket.destroy()
          // The proxy's own refusals are plain text naming the reason; an upstream's body is never shown.
          const refusal = /^credproxy egress: refused \(([a-z-]+)\)/.exec(body)
          resolve({ status: response.statusCode ?? 0, ...(refusal?.[1] === undefined ? {} : { reason: refusal[1] }) })
        })
      })
      req.end()
    })
    connect.end()
  })
}

async function testRule(args: string[], io: CliIO): Promise<number> {
  const [name, urlText, ...rest] = args
  if (name === undefined || rest.length > 0) throw new UsageError('egress test takes RULE and an optional URL', 'Example: credproxy egress test github https://api.github.com/user')
  const paths = resolvePaths(io.env)
  const rules = await loadEgressRules(paths.configDir)
  const rule = rules.find((r) => r.name === name)
  if (rule === undefined) throw new UsageError(`no egress rule named ${name}`, `Known rules: ${rules.map((r) => r.name).join(', ')} (credproxy egress rules).`)
  const host = rule.hosts.find((h) => !h.startsWith('*.'))
  const url = new URL(urlText ?? `https://${host ?? ''}/`)
  if (url.protocol !== 'https:') throw new UsageError(`${url.href} is not an https URL`, 'Egress rules inject over HTTPS only.')
  const { startHostSession } = await import('../session/host-session.js')
  const { startSessionEgress } = await import('../session/session-egress.js')
  const session = await startHostSession({
    env: io.env,
    paths,
    grants: { providers: [], keys: [], capabilities: [], egress: [name] },
    command: ['credproxy-egress-test'],
    log: () => undefined,
    storeLog: logLineTo(io.stderr),
    sandboxed: false,
  })
  try {
    const egress = await startSessionEgress({ session, rules: [name], tcp: true, insideDir: '/', grantedRules: () => session.grants.egressRules() })
    try {
      const proxyUrl = new URL(egress.env['HTTPS_PROXY'] ?? '')
      const result = await getThroughProxy(url, Number(proxyUrl.port), decodeURIComponent(proxyUrl.password), egress.proxy.caCertPem)
      const ok = result.reason === undefined && result.status < 400
      writeLine(io.stdout, `${name}: GET ${url.origin}${url.pathname} -> ${result.status}${result.reason === undefined ? '' : ` (${result.reason})`}`)
      if (!ok) {
        writeLine(io.stderr, `credproxy: egress test ${name} failed: ${result.status === 401 || result.status === 403 ? `the upstream refused the ${credentialText(rule)} credential` : 'see the status above'}`)
      }
      return ok ? EXIT.OK : EXIT.FAILURE
    } finally {
      await egress.close()
    }
  } catch (error) {
    if (error instanceof CredproxyError) throw error
    throw new CredproxyError('FAILED', `egress test ${name}: ${(error as Error).message}`, { hint: 'Check the rule (credproxy egress rules) and that the host is reachable.' })
  } finally {
    await session.close()
  }
}

export const command: Command = {
  name: 'egress',
  help,
  async run(args, io) {
    const [sub, ...rest] = args
    if (sub === 'rules') return listRules(rest, io)
    if (sub === 'test') return testRule(rest, io)
    throw new UsageError(sub === undefined ? 'egress needs a subcommand: rules or test' : `unknown egress subcommand ${sub}`, 'Run `credproxy egress --help`.')
  },
}
