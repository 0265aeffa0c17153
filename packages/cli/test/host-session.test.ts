// startHostSession: one handle over stores, credentials, audit, broker socket and
// control channel; close() is idempotent, runs in reverse order and attempts every
// step even when one fails; a sandboxed session admits only the attached sandbox.
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, test } from 'vitest'
import { auditLogPath } from '../src/audit/audit-format.js'
import { controlSocketPath } from '../src/control/control-channel.js'
import { resolvePaths } from '../src/paths.js'
import { StoredCredentialSource } from '../src/credentials/stored-credential-source.js'
import { startHostSession, type HostSession } from '../src/session/host-session.js'
import { memoryStores } from './helpers/server-memory-stores.js'
import { RawClient } from './helpers/server-raw-client.js'

const homes: string[] = []
const sessions: HostSession[] = []
afterEach(async () => {
  for (const s of sessions.splice(0)) await s.close()
  for (const h of homes.splice(0)) await rm(h, { recursive: true, force: true })
})

async function env(): Promise<NodeJS.ProcessEnv> {
  const home = await mkdtemp(join(tmpdir(), 'cp-host-session-'))
  homes.push(home)
  return { CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' }
}

const GRANTS = { providers: [], keys: ['OPENAI_API_KEY'], capabilities: ['read' as const] }

describe('startHostSession', () => {
  test('one handle: the broker answers through the credential source, audit and control are up, close removes all', async () => {
    const stores = memoryStores()
    await stores.keys.saveKey('OPENAI_API_KEY', 'sk-session')
    const e = await env()
    const paths = resolvePaths(e)
    const session = await startHostSession({ env: e, grants: GRANTS, command: ['test'], log: () => undefined, stores, sandboxed: false })
    sessions.push(session)
    expect(session.secret).toHaveLength(32)
    expect(session.credentials).toBeInstanceOf(StoredCredentialSource)
    expect(session.credentials.refreshes).toBe(false)
    expect(await session.credentials.apiKey('OPENAI_API_KEY')).toBe('sk-session')
    expect(existsSync(controlSocketPath(paths, session.sessionId))).toBe(true)

    const c = await RawClient.connect(session.socketPath)
    expect(await c.handshakeV3(session.secret)).toMatchObject({ ok: true, data: { session: session.sessionId } })
    expect(await c.request('get_api_key', { name: 'OPENAI_API_KEY' })).toMatchObject({ ok: true, data: { key: 'sk-session' } })
    expect(session.peers()).toHaveLength(1)
    c.close()

    await session.close()
    await session.close() // idempotent
    expect(existsSync(session.socketPath)).toBe(false)
    expect(existsSync(controlSocketPath(paths, session.sessionId))).toBe(false)
    // The audit log was flushed and closed: the request is in it.
    expect(await readFile(auditLogPath(paths), 'utf8')).toContain('"op":"get_api_key"')
  })

  test('a failing clean-up step is reported and every other step still runs', async () => {
    const stores = memoryStores()
    const e = await env()
    const paths = resolvePaths(e)
    const errors: unknown[] = []
    const session = await startHostSession({
      env: e,
      grants: GRANTS,
      command: ['test'],
      log: () => undefined,
      openStores: async () => ({ ...stores, tokens: Object.assign(stores.tokens, { close: () => Promise.reject(new Error('disk gone')) }) }),
      onCleanupError: (error) => errors.push(error),
      sandboxed: false,
    })
    await session.close()
    expect(errors).toHaveLength(1)
    expect(String(errors[0])).toContain('disk gone')
    expect(existsSync(session.socketPath)).toBe(false)
    expect(existsSync(controlSocketPath(paths, session.sessionId))).toBe(false)
  })

  test('a failure while assembling closes what was built before the error propagates', async () => {
    const e = await env()
    let storesClosed = false
    const stores = memoryStores()
    const failing = startHostSession({
      env: e,
      grants: GRANTS,
      command: ['test'],
      log: () => undefined,
      openStores: async () => ({ ...stores, tokens: Object.assign(stores.tokens, { close: async () => void (storesClosed = true) }) }),
      createOAuth: () => Promise.reject(new Error('providers.json is broken')),
      sandboxed: false,
    })
    await expect(failing).rejects.toThrow('providers.json is broken')
    expect(storesClosed).toBe(true)
  })

  test('the default OAuth: none without providers.json; a providers.json that exists is read, broken or valid', async () => {
    const e = await env()
    const paths = resolvePaths(e)
    const open = (): Promise<HostSession> =>
      startHostSession({ env: e, grants: GRANTS, command: ['test'], log: () => undefined, stores: memoryStores(), sandboxed: false })
    const none = await open()
    sessions.push(none)
    expect(none.credentials).toBeInstanceOf(StoredCredentialSource)
    expect(none.credentials.refreshes).toBe(false)
    await none.close()

    await mkdir(paths.configDir, { recursive: true })
    const file = join(paths.configDir, 'providers.json')
    await writeFile(file, '{', { mode: 0o600 })
    await expect(open()).rejects.toThrow(`${file} is not valid JSON`)

    await writeFile(file, JSON.stringify({ providers: { example: { issuer: 'https://idp.example', client_id: 'c' } } }), { mode: 0o600 })
    const configured = await open()
    sessions.push(configured)
    expect(configured.credentials.refreshes).toBe(true)
  })

  test('sources.json: absent, the stored source; present, it is read (broken: the session fails) and serves its names', async () => {
    const e = { ...(await env()), HOST_SOURCE_VALUE: 'sk-from-env' }
    const paths = resolvePaths(e)
    const open = (): Promise<HostSession> =>
      startHostSession({ env: e, grants: GRANTS, command: ['test'], log: () => undefined, stores: memoryStores(), sandboxed: false })
    const plain = await open()
    sessions.push(plain)
    expect(plain.credentials).toBeInstanceOf(StoredCredentialSource)
    expect(await plain.credentials.apiKey('OPENAI_API_KEY')).toBeNull()
    await plain.close()

    await mkdir(paths.configDir, { recursive: true })
    const file = join(paths.configDir, 'sources.json')
    await writeFile(file, '{', { mode: 0o600 })
    await expect(open()).rejects.toThrow(`${file} is not valid JSON`)

    await writeFile(file, JSON.stringify({ keys: { OPENAI_API_KEY: { env: 'HOST_SOURCE_VALUE' } } }), { mode: 0o600 })
    const sourced = await open()
    sessions.push(sourced)
    expect(await sourced.credentials.apiKey('OPENAI_API_KEY')).toBe('sk-from-env')
  })

  test('sandboxed: no peer is admitted before the sandbox is attached, its descendants after', async () => {
    const e = await env()
    const session = await startHostSession({ env: e, grants: GRANTS, command: ['test'], log: () => undefined, stores: memoryStores(), sandboxed: true })
    sessions.push(session)
    const before = await RawClient.connect(session.socketPath)
    expect(await before.next()).toMatchObject({ ok: false, code: 'FORBIDDEN' })
    before.close()
    // This test process stands in for the sandbox: a peer that is the sandbox pid itself is inside.
    session.attachSandbox(() => [process.pid])
    const after = await RawClient.connect(session.socketPath)
    expect(await after.handshakeV3(session.secret)).toMatchObject({ ok: true })
    after.close()
  })
})
