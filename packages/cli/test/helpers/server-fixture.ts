// Start a CredentialProxyServer on a real Unix socket in a fresh mkdtemp directory,
// recording audit entries and host log lines; cleanup stops it and removes the dir.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { HostStores } from '../../src/storage/types.js'
import { CredentialProxyServer, type CredentialProxyServerOptions } from '../../src/broker/credential-proxy-server.js'
import type { AuditEntry } from '../../src/broker/hooks.js'
import { memoryStores } from './server-memory-stores.js'
import { RawClient } from './server-raw-client.js'

export const ALL_GRANTS = {
  providers: [{ provider: '*' }],
  keys: ['*'],
  capabilities: ['read', 'login', 'save'] as Array<'read' | 'login' | 'save'>,
}

export interface ServerFixture<S extends HostStores> {
  server: CredentialProxyServer
  stores: S
  socketPath: string
  secret: Buffer
  dir: string
  audit: AuditEntry[]
  logs: string[]
  /** A client that has completed the v3 handshake. */
  client(): Promise<RawClient>
  cleanup(): Promise<void>
}

export async function startServer<S extends HostStores = ReturnType<typeof memoryStores>>(
  options: Partial<CredentialProxyServerOptions> & { stores?: S } = {},
): Promise<ServerFixture<S>> {
  const dir = await mkdtemp(join(tmpdir(), 'cps-'))
  const stores = (options.stores ?? memoryStores()) as S
  const audit: AuditEntry[] = []
  const logs: string[] = []
  const clients: RawClient[] = []
  const server = new CredentialProxyServer({
    grants: ALL_GRANTS,
    runtimeDir: join(dir, 'run'),
    audit: { write: (e) => audit.push(e) },
    log: (line) => logs.push(line),
    ...options,
    stores,
  })
  const started = await server.start()
  return {
    server,
    stores,
    socketPath: started.socketPath,
    secret: started.secret,
    dir,
    audit,
    logs,
    async client() {
      const c = await RawClient.connect(started.socketPath)
      clients.push(c)
      const finish = await c.handshakeV3(started.secret)
      if (finish['ok'] !== true) throw new Error(`handshake failed: ${JSON.stringify(finish)}`)
      return c
    },
    async cleanup() {
      for (const c of clients) c.close()
      await server.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

export const TOKEN = {
  access_token: 'at-visible-1',
  refresh_token: 'rt-SECRET-never-leaves',
  expiry: Math.floor(Date.now() / 1000) + 3600,
  token_type: 'Bearer',
  scope: 'openid',
  client_secret: 'cs-SECRET-never-leaves',
  account: 'me@example.com',
}
