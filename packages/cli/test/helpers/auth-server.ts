// A real authorization server (oidc-provider 9) on 127.0.0.1 for every OAuth test
// in the repository. No mocks: tests drive the provider's own endpoints over HTTP.
//
// API:
//   const as = await startAuthServer({ accessTokenTtlSeconds?: number })
//   as.issuer                     'http://127.0.0.1:<port>' (discovery at /.well-known/openid-configuration)
//   as.clientId                   public client (no secret): device_code, authorization_code + PKCE
//                                 (any loopback port, path /callback), refresh_token with rotation
//   as.scopes                     'openid offline_access api' (offline_access gives a refresh token)
//   as.providerConfig(extra?)     a providers.json entry for this server (flows, short poll interval)
//   as.writeProvidersFile(configDir, name?, extra?)  writes <configDir>/providers.json
//   await as.approveDevice(userCode, account?)  logs in (as `account`, default 'test-user', which becomes the
//                                               id_token `sub`) and consents through /device and /interaction
//   await as.denyDevice(userCode)               the user presses "abort" on the device page
//   await as.completeAuthorization(authUrl, login?)  logs in (as `login`, default test-user; the account id
//                                               and id_token sub) and consents; returns the redirect URL
//                                               (http://127.0.0.1:<port>/callback?code=..&state=..)
//                                               without fetching it
//   as.refreshRequests            token endpoint requests with grant_type=refresh_token (success or error)
//   as.refreshTokensSent          the refresh_token value of each of those requests, in order
//   as.tokenRequests              all token endpoint requests (any grant type)
//   as.deviceAuthorizationRequests  requests to the device authorization endpoint (device flow starts)
//   await as.revokeGrant(refreshToken)          revokes the token's whole grant (RFC 7009 endpoint)
//   as.failTokenEndpoint(n, status)             the next n token endpoint requests answer `status`
//   as.patchJson(method, path, fields|null)     merge fields into the JSON answers to method+path (a misbehaving
//                                               server: huge device `interval`, discovery pointing elsewhere)
//   as.tokenEndpointHits          raw POST /token requests (any outcome)
//   await as.close()
import { createServer, type Server } from 'node:http'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import Provider from 'oidc-provider'

export interface AuthServerOptions {
  /** Access token lifetime; short by default so refresh paths run in tests. */
  accessTokenTtlSeconds?: number
}

export interface AuthServer {
  issuer: string
  clientId: string
  scopes: string
  refreshRequests: number
  refreshTokensSent: string[]
  tokenRequests: number
  deviceAuthorizationRequests: number
  providerConfig(extra?: Record<string, unknown>): Record<string, unknown>
  writeProvidersFile(configDir: string, name?: string, extra?: Record<string, unknown>): Promise<string>
  approveDevice(userCode: string, account?: string): Promise<void>
  denyDevice(userCode: string): Promise<void>
  completeAuthorization(authUrl: string, login?: string): Promise<string>
  revokeGrant(refreshToken: string): Promise<void>
  failTokenEndpoint(count: number, status?: number): void
  patchJson(method: string, path: string, fields: Record<string, unknown> | null): void
  tokenEndpointHits: number
  close(): Promise<void>
}

const CLIENT_ID = 'credproxy-test'
const SCOPES = 'openid offline_access api'
const TEST_POLL_INTERVAL_MS = 50

/** Minimal cookie jar: name -> value (paths are ignored; the flows use distinct names). */
class CookieJar {
  private readonly cookies = new Map<string, string>()
  store(response: Response): void {
    for (const line of response.headers.getSetCookie()) {
      const pair = line.split(';', 1)[0] ?? ''
      const eq = pair.indexOf('=')
      if (eq <= 0) continue
      const name = pair.slice(0, eq)
      const value = pair.slice(eq + 1)
      if (value === '' || /expires=Thu, 01 Jan 1970/i.test(line)) this.cookies.delete(name)
      else this.cookies.set(name, value)
    }
  }
  header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
  }
}

function hiddenInputs(html: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const match of html.matchAll(/<input[^>]*type="hidden"[^>]*>/g)) {
    const name = /name="([^"]+)"/.exec(match[0])?.[1]
    const value = /value="([^"]*)"/.exec(match[0])?.[1]
    if (name !== undefined && value !== undefined) out[name] = value
  }
  return out
}

export async function startAuthServer(options: AuthServerOptions = {}): Promise<AuthServer> {
  const server: Server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const issuer = `http://127.0.0.1:${port}`

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: CLIENT_ID,
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
        response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/callback'],
      },
    ],
    features: {
      devInteractions: { enabled: true },
      deviceFlow: { enabled: true },
      revocation: { enabled: true },
    },
    scopes: ['openid', 'offline_access', 'api'],
    ttl: {
      AccessToken: options.accessTokenTtlSeconds ?? 60,
      DeviceCode: 600,
      Grant: 86_400,
      IdToken: 3600,
      Interaction: 600,
      RefreshToken: 86_400,
      Session: 86_400,
    },
    cookies: { keys: ['credproxy-test-cookie-key'] },
    findAccount: (_ctx: unknown, id: string) => ({ accountId: id, claims: () => ({ sub: id }) }),
  })

  const state = {
    refreshRequests: 0,
    refreshTokensSent: [] as string[],
    tokenRequests: 0,
    deviceAuthorizationRequests: 0,
    failures: 0,
    failureStatus: 503,
    tokenEndpointHits: 0,
    patches: new Map<string, Record<string, unknown>>(),
  }
  const countGrant = (ctx: { oidc?: { params?: Record<string, unknown> } }): void => {
    state.tokenRequests += 1
    const params = ctx.oidc?.params ?? {}
    if (params['grant_type'] === 'refresh_token') {
      state.refreshRequests += 1
      if (typeof params['refresh_token'] === 'string') state.refreshTokensSent.push(params['refresh_token'])
    }
  }
  provider.on('grant.success', (ctx) => countGrant(ctx))
  provider.on('grant.error', (ctx) => countGrant(ctx))

  const handle = provider.callback()
  server.on('request', (req, res) => {
    if (req.method === 'POST' && req.url === '/device/auth') state.deviceAuthorizationRequests += 1
    if (req.method === 'POST' && req.url === '/token') state.tokenEndpointHits += 1
    const patch = state.patches.get(`${req.method ?? ''} ${req.url ?? ''}`)
    if (patch !== undefined) {
      const end = res.end.bind(res) as (body?: unknown) => typeof res
      res.end = ((body?: unknown) => {
        const text = JSON.stringify({ ...(JSON.parse(String(body)) as object), ...patch })
        res.setHeader('content-length', Buffer.byteLength(text))
        return end(text)
      }) as typeof res.end
    }
    if (state.failures > 0 && req.method === 'POST' && req.url === '/token') {
      state.failures -= 1
      req.resume()
      res.writeHead(state.failureStatus, { 'content-type': 'text/plain' }).end('unavailable')
      return
    }
    handle(req, res)
  })

  /** Follows redirects by hand, answering the login and consent pages, until `stop` says so. */
  async function drive(start: Response, jar: CookieJar, stop: (location: string) => boolean, account = 'test-user'): Promise<string> {
    let response = start
    for (let step = 0; step < 20; step += 1) {
      jar.store(response)
      if (response.status >= 300 && response.status < 400) {
        const location = new URL(response.headers.get('location') ?? '', issuer).href
        if (stop(location)) return location
        response = await fetch(location, { redirect: 'manual', headers: { cookie: jar.header() } })
        continue
      }
      const html = await response.text()
      const url = response.url === '' ? issuer : response.url
      if (response.status !== 200) throw new Error(`auth server answered ${response.status} at ${url}: ${html.slice(0, 300)}`)
      const prompt = /name="prompt" value="(login|consent)"/.exec(html)?.[1]
      const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1]
      if (prompt === undefined || action === undefined) return url
      const body = new URLSearchParams(prompt === 'login' ? { prompt, login: account, password: 'x' } : { prompt })
      response = await fetch(new URL(action, issuer), {
        method: 'POST',
        redirect: 'manual',
        headers: { cookie: jar.header(), 'content-type': 'application/x-www-form-urlencoded' },
        body,
      })
    }
    throw new Error('authorization did not finish within 20 steps')
  }

  async function deviceForm(userCode: string, extra: Record<string, string>): Promise<{ jar: CookieJar; response: Response }> {
    const jar = new CookieJar()
    const page = await fetch(`${issuer}/device`, { redirect: 'manual' })
    jar.store(page)
    const { xsrf } = hiddenInputs(await page.text())
    if (xsrf === undefined) throw new Error('device page has no xsrf field')
    const post = (fields: Record<string, string>): Promise<Response> =>
      fetch(`${issuer}/device`, {
        method: 'POST',
        redirect: 'manual',
        headers: { cookie: jar.header(), 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ xsrf, user_code: userCode, ...fields }),
      })
    return { jar, response: await post(extra) }
  }

  const api: AuthServer = {
    issuer,
    clientId: CLIENT_ID,
    scopes: SCOPES,
    get refreshRequests() {
      return state.refreshRequests
    },
    get refreshTokensSent() {
      return state.refreshTokensSent
    },
    get tokenRequests() {
      return state.tokenRequests
    },
    get deviceAuthorizationRequests() {
      return state.deviceAuthorizationRequests
    },
    providerConfig(extra = {}) {
      return {
        issuer,
        client_id: CLIENT_ID,
        scopes: SCOPES.split(' '),
        flows: ['device_code', 'pkce'],
        poll_interval_ms: TEST_POLL_INTERVAL_MS,
        ...extra,
      }
    },
    async writeProvidersFile(configDir, name = 'testprov', extra = {}) {
      await mkdir(configDir, { recursive: true, mode: 0o700 })
      const file = join(configDir, 'providers.json')
      await writeFile(file, JSON.stringify({ providers: { [name]: api.providerConfig(extra) } }, null, 2), { mode: 0o600 })
      return file
    },
    async approveDevice(userCode, account) {
      const { jar, response } = await deviceForm(userCode, { confirm: 'yes' })
      const end = await drive(response, jar, () => false, account)
      if (!end.includes('/device')) throw new Error(`device approval ended at ${end}`)
    },
    async denyDevice(userCode) {
      const { response } = await deviceForm(userCode, { abort: 'yes' })
      await response.text()
    },
    async completeAuthorization(authUrl, login) {
      const jar = new CookieJar()
      const first = await fetch(authUrl, { redirect: 'manual' })
      return drive(first, jar, (location) => !location.startsWith(issuer), login)
    },
    async revokeGrant(refreshToken) {
      const response = await fetch(`${issuer}/token/revocation`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token: refreshToken, token_type_hint: 'refresh_token', client_id: CLIENT_ID }),
      })
      if (!response.ok) throw new Error(`revocation answered ${response.status}`)
    },
    get tokenEndpointHits() {
      return state.tokenEndpointHits
    },
    patchJson(method, path, fields) {
      if (fields === null) state.patches.delete(`${method} ${path}`)
      else state.patches.set(`${method} ${path}`, fields)
    },
    failTokenEndpoint(count, status = 503) {
      state.failures = count
      state.failureStatus = status
    },
    async close() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  return api
}
