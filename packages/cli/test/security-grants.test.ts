// Must show: ungranted provider, bucket and key name each get NOT_GRANTED (whatever is
// stored), enumeration shows granted names only, and a grant added or revoked at runtime
// (control channel, `credproxy grant|revoke`) applies to the next request on the SAME connection.
import { ProxyError, type OAuthToken } from '@credproxy/core'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { main } from '../src/cli.js'
import { sendControlRequest } from '../src/control/control-client.js'
import { captureIO, startSecureSession, type SecureSession } from './helpers/security-helpers.js'

const token = (name: string): OAuthToken => ({ access_token: `at-${name}`, refresh_token: `rt-${name}`, expiry: 4_000_000_000, token_type: 'Bearer' })

let session: SecureSession
beforeEach(async () => {
  session = await startSecureSession({
    grants: { providers: [{ provider: 'anthropic', buckets: ['work'] }, { provider: 'gemini' }], keys: ['OPENAI_API_KEY'], capabilities: ['read'] },
  })
  const { tokens, keys } = session.stores
  await tokens.saveToken('anthropic', token('anthropic-work'), 'work')
  await tokens.saveToken('anthropic', token('anthropic-personal'), 'personal')
  await tokens.saveToken('gemini', token('gemini'))
  await tokens.saveToken('github', token('github'))
  await keys.saveKey('OPENAI_API_KEY', 'sk-openai')
  await keys.saveKey('STRIPE_KEY', 'sk-stripe')
})
afterEach(async () => {
  await session.cleanup()
})

async function code(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => 'ok',
    (e: unknown) => (e instanceof ProxyError ? e.code : String(e)),
  )
  return error
}

describe('grants decide, not the store', () => {
  test('an ungranted provider, bucket and key name each get NOT_GRANTED, stored or not', async () => {
    const client = session.client()
    expect(await code(client.request('get_token', { provider: 'github' }))).toBe('NOT_GRANTED')
    expect(await code(client.request('get_token', { provider: 'nosuchprovider' }))).toBe('NOT_GRANTED')
    expect(await code(client.request('get_token', { provider: 'anthropic', bucket: 'personal' }))).toBe('NOT_GRANTED')
    expect(await code(client.request('get_token', { provider: 'anthropic', bucket: 'nosuchbucket' }))).toBe('NOT_GRANTED')
    expect(await code(client.request('get_api_key', { name: 'STRIPE_KEY' }))).toBe('NOT_GRANTED')
    expect(await code(client.request('has_api_key', { name: 'NO_SUCH_KEY' }))).toBe('NOT_GRANTED')
    expect(await code(client.request('save_token', { provider: 'gemini', token: token('x') }))).toBe('NOT_GRANTED')
    // Granted and missing is the ordinary NOT_FOUND.
    expect(await code(client.request('get_token', { provider: 'gemini', bucket: 'other' }))).toBe('NOT_FOUND')
    expect(await client.request('get_token', { provider: 'anthropic', bucket: 'work' })).toMatchObject({ access_token: 'at-anthropic-work' })
  })

  test('the refusal names the grant to add', async () => {
    const error = await session.client().request('get_api_key', { name: 'STRIPE_KEY' }).catch((e: unknown) => e)
    expect((error as ProxyError).message).toContain(`credproxy grant --session ${session.sessionId} --key STRIPE_KEY`)
  })

  test('enumeration shows granted names only', async () => {
    const client = session.client()
    expect((await client.request('list_providers', {})).providers.sort()).toEqual(['anthropic', 'gemini'])
    expect((await client.request('list_buckets', { provider: 'anthropic' })).buckets).toEqual(['work'])
    expect((await client.request('list_api_keys', {})).keys).toEqual(['OPENAI_API_KEY'])
  })

  test('every refusal is audited with its names and NOT_GRANTED', async () => {
    await code(session.client().request('get_api_key', { name: 'STRIPE_KEY' }))
    expect(await session.auditLines()).toContainEqual(
      expect.objectContaining({ event: 'request', op: 'get_api_key', key: 'STRIPE_KEY', outcome: 'NOT_GRANTED' }),
    )
  })
})

describe('grants change at runtime, effective on the next request without reconnecting', () => {
  test('through the control channel', async () => {
    const raw = await session.rawClient()
    expect(await raw.request('get_token', { provider: 'github' })).toMatchObject({ ok: false, code: 'NOT_GRANTED' })
    await sendControlRequest(session.control.socketPath, 'grant', { providers: [{ provider: 'github' }] })
    expect(await raw.request('get_token', { provider: 'github' })).toMatchObject({ ok: true, data: { access_token: 'at-github' } })
    await sendControlRequest(session.control.socketPath, 'revoke', { providers: [{ provider: 'github' }] })
    expect(await raw.request('get_token', { provider: 'github' })).toMatchObject({ ok: false, code: 'NOT_GRANTED' })
    expect(raw.closed).toBe(false)
  })

  test('through `credproxy grant` and `credproxy revoke` (a mid-session profile switch)', async () => {
    const client = session.client()
    expect(await code(client.request('get_token', { provider: 'anthropic', bucket: 'personal' }))).toBe('NOT_GRANTED')
    const cli = async (...argv: string[]) => main(argv, captureIO(session.env))

    expect(await cli('grant', '--session', session.sessionId, '--provider', 'anthropic:personal', '--key', 'STRIPE_KEY')).toBe(0)
    expect(await cli('revoke', '--session', session.sessionId, '--provider', 'anthropic:work')).toBe(0)
    expect(await client.request('get_token', { provider: 'anthropic', bucket: 'personal' })).toMatchObject({ access_token: 'at-anthropic-personal' })
    expect(await client.request('get_api_key', { name: 'STRIPE_KEY' })).toEqual({ key: 'sk-stripe' })
    expect(await code(client.request('get_token', { provider: 'anthropic', bucket: 'work' }))).toBe('NOT_GRANTED')
    expect((await client.request('list_buckets', { provider: 'anthropic' })).buckets).toEqual(['personal'])

    // The same connection served all of it: one handshake in the audit log.
    const lines = await session.auditLines()
    expect(lines.filter((line) => line.event === 'handshake_ok')).toHaveLength(1)
    expect(lines).toContainEqual(expect.objectContaining({ event: 'grant_changed', op: 'grant', provider: 'anthropic', bucket: 'personal' }))
    expect(lines).toContainEqual(expect.objectContaining({ event: 'grant_changed', op: 'revoke', provider: 'anthropic', bucket: 'work' }))
  })

  test('`credproxy sessions` shows the session, its grants and its connected peer', async () => {
    const client = session.client()
    await client.request('list_providers', {})
    const io = captureIO(session.env)
    expect(await main(['sessions', '--json'], io)).toBe(0)
    const [view] = JSON.parse(io.stdoutText()) as Array<Record<string, unknown>>
    expect(view).toMatchObject({
      id: session.sessionId,
      socketPath: session.socketPath,
      command: 'sandboxed-agent',
      grants: { keys: ['OPENAI_API_KEY'] },
      peers: [expect.objectContaining({ pid: process.pid, uid: process.getuid?.() }) as unknown],
    })
  })
})
