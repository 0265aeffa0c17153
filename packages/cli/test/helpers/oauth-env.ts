// Shared setup for OAuth tests: a fresh CREDPROXY_HOME with real file stores
// (keyring off) and a providers.json pointing at a real test authorization server.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { resolvePaths, type CredproxyPaths } from '../../src/paths.js'
import { openHostStores } from '../../src/storage/index.js'
import type { HostStores } from '../../src/storage/types.js'
import type { AuthServer } from './auth-server.js'

export interface OAuthTestEnv {
  home: string
  env: NodeJS.ProcessEnv
  paths: CredproxyPaths
  stores: HostStores
  providersFile: string
  cleanup(): Promise<void>
}

export async function createOAuthTestEnv(
  server: AuthServer,
  provider = 'testprov',
  extra: Record<string, unknown> = {},
): Promise<OAuthTestEnv> {
  const home = await mkdtemp(join(tmpdir(), 'credproxy-oauth-'))
  const env: NodeJS.ProcessEnv = { ...process.env, CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' }
  delete env['CREDPROXY_SOCKET']
  const paths = resolvePaths(env)
  const providersFile = await server.writeProvidersFile(paths.configDir, provider, extra)
  const stores = await openHostStores({ env, paths, log: () => undefined })
  return { home, env, paths, stores, providersFile, cleanup: () => rm(home, { recursive: true, force: true }) }
}
