// The factories as an embedding CLI uses them: a child process with CREDPROXY_SOCKET
// and the secret on fd 3, talking to the hand-written test peer (helpers/test-peer.ts).
// Needs the built package: run `npm run build` first.
import { existsSync } from 'node:fs'
import { afterEach, beforeAll, describe, expect, test } from 'vitest'
import { createProviderKeyStorage, createTokenStore, isProxyMode, ProxyError, type ProviderKeyStorage, type TokenStore } from '../src/index.js'
import { CORE_DIST_PATH, runChild } from './helpers/child.js'
import { TestPeer, TOKEN, type Frame, type PeerConnection } from './helpers/test-peer.js'

const SECRET = Buffer.alloc(32, 0x5a)
const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup()
})
beforeAll(() => {
  if (!existsSync(CORE_DIST_PATH)) throw new Error('run `npm run build` first: the child imports packages/core/dist')
})

const CHILD = `
const { createProviderKeyStorage, createTokenStore, getSharedClient } = await import(CORE)
const tokens = createTokenStore()
const keys = createProviderKeyStorage()
const token = await tokens.getToken('anthropic')
const missing = await tokens.getToken('nothing-here')
const key = await keys.getKey('OPENAI_API_KEY')
const saveKey = await keys.saveKey('OPENAI_API_KEY', 'x').catch((error) => error.code)
console.log(JSON.stringify({ token, missing, key, saveKey, shared: getSharedClient() === getSharedClient(),
  envHasFd: 'CREDPROXY_SECRET_FD' in process.env }))
`

function host(request: Frame, c: PeerConnection): void {
  const payload = request['payload'] as Record<string, unknown>
  if (request['op'] === 'get_token' && payload['provider'] === 'anthropic') c.reply(request, TOKEN)
  else if (request['op'] === 'get_api_key') c.reply(request, { key: 'sk-from-host' })
  else c.fail(request, 'NOT_FOUND')
}

describe('inside a sandbox (CREDPROXY_SOCKET set)', () => {
  test('a child gets a token and a key through the factories, over one connection, and exits on its own', async () => {
    const peer = await TestPeer.start({ secret: SECRET, onRequest: host })
    cleanups.push(() => peer.close())
    const result = await runChild(CHILD, {
      env: { PATH: process.env['PATH'], CREDPROXY_SOCKET: peer.socketPath, CREDPROXY_SECRET_FD: '3' },
      fd3: SECRET.toString('hex'),
    })
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    expect(JSON.parse(result.stdout)).toEqual({
      token: TOKEN,
      missing: null,
      key: 'sk-from-host',
      saveKey: 'FORBIDDEN',
      shared: true,
      envHasFd: false,
    })
    expect(peer.connections).toHaveLength(1)
    expect(peer.requests.map((r) => r['op'])).toEqual(['get_token', 'get_token', 'get_api_key'])
  })

  test('a broker that cannot prove the secret gets nothing, and the child fails clearly', async () => {
    const peer = await TestPeer.start({ secret: SECRET, handshake: 'impostor', onRequest: host })
    cleanups.push(() => peer.close())
    const result = await runChild(`${CHILD.split('\n').slice(0, 4).join('\n')}\nawait tokens.getToken('anthropic').catch((e) => console.log(e.code))`, {
      env: { PATH: process.env['PATH'], CREDPROXY_SOCKET: peer.socketPath, CREDPROXY_SECRET_FD: '3' },
      fd3: SECRET.toString('hex'),
    })
    expect(result.stdout.trim()).toBe('SERVER_UNVERIFIED')
    expect(peer.requests).toEqual([])
  })
})

describe('on the host (no CREDPROXY_SOCKET)', () => {
  test('the injected host stores are returned unchanged', () => {
    const hostTokens = { marker: 'host' } as unknown as TokenStore
    const hostKeys = { marker: 'keys' } as unknown as ProviderKeyStorage
    expect(createTokenStore({ env: {}, hostStore: () => hostTokens })).toBe(hostTokens)
    expect(createProviderKeyStorage({ env: {}, hostStorage: () => hostKeys })).toBe(hostKeys)
    expect(isProxyMode({})).toBe(false)
    expect(isProxyMode({ CREDPROXY_SOCKET: '/run/x.sock' })).toBe(true)
  })

  test('without a socket and without a host store: a clear error', () => {
    expect(() => createTokenStore({ env: {} })).toThrow(ProxyError)
    expect(() => createTokenStore({ env: {} })).toThrow(/CREDPROXY_SOCKET is not set/)
    expect(() => createProviderKeyStorage({ env: {} })).toThrow(/no host storage/)
  })

  test('a relative socket path is refused before anything is read', () => {
    const env: NodeJS.ProcessEnv = { CREDPROXY_SOCKET: 'broker.sock', CREDPROXY_SECRET_FD: '3' }
    expect(() => createTokenStore({ env })).toThrow(/absolute path/)
    expect(env['CREDPROXY_SECRET_FD']).toBe('3')
  })
})
