import { spawn } from 'node:child_process'
import { chmod, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { encodeFrame } from '@credproxy/core'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { main } from '../src/cli.js'
import { command as grantCommand } from '../src/commands/grant.js'
import { resolvePaths, type CredproxyPaths } from '../src/paths.js'
import { auditLogPath } from '../src/audit/audit-format.js'
import { readAuditEntries } from '../src/audit/audit-reader.js'
import { AuditLog } from '../src/audit/audit-writer.js'
import { MAX_CONTROL_FRAME_BYTES, startControlChannel, type ControlChannel } from '../src/control/control-channel.js'
import { SessionGrants } from '../src/broker/grants.js'
import { listSessions, registerSession, sessionsDir } from '../src/control/session-registry.js'
import { openHostStores } from '../src/storage/index.js'
import { captureIO, startSecureSession } from './helpers/security-helpers.js'
import { RawClient } from './helpers/server-raw-client.js'

const PEER_CLIENT = fileURLToPath(new URL('./fixtures/peer-client.mjs', import.meta.url))
const SESSION = 'a1b2c3d4e5f60718'

let home: string
let paths: CredproxyPaths
let grants: SessionGrants
let channel: ControlChannel | undefined
let audit: AuditLog | undefined

beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), 'cp-ctl-'))
  paths = resolvePaths({ CREDPROXY_HOME: home })
  grants = new SessionGrants(SESSION, { providers: [{ provider: 'anthropic' }], keys: [], capabilities: ['read'] })
})

afterEach(async () => {
  await channel?.stop()
  channel = undefined
  await audit?.close()
  audit = undefined
  await rm(home, { recursive: true, force: true })
})

async function start(): Promise<ControlChannel> {
  audit = await AuditLog.open(auditLogPath(paths))
  channel = await startControlChannel(
    {
      sessionId: SESSION,
      grants,
      socketPath: join(paths.runtimeDir, `s-${SESSION}`, 'broker.sock'),
      peers: () => [{ pid: 4321, uid: 1000, gid: 1000, sandboxPid: 4300 }],
    },
    paths,
    { command: ['my-agent', '--api-key', 'sk-SECRET-IN-ARGV'], audit },
  )
  return channel
}

const cli = async (...argv: string[]) => {
  const io = captureIO({ CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' })
  const code = await main(argv, io)
  return { code, out: io.stdoutText(), err: io.stderrText() }
}

describe('session registry and control socket', () => {
  test('registers the session in a 0600 file holding only id, pid, sockets, start time and argv[0]', async () => {
    const ch = await start()
    expect(ch.registryPath).toBe(join(sessionsDir(paths), `${SESSION}.json`))
    expect((await stat(ch.registryPath)).mode & 0o777).toBe(0o600)
    expect((await stat(sessionsDir(paths))).mode & 0o777).toBe(0o700)
    const text = await readFile(ch.registryPath, 'utf8')
    expect(text).not.toContain('SECRET')
    expect(JSON.parse(text)).toEqual({
      id: SESSION,
      pid: process.pid,
      socketPath: join(paths.runtimeDir, `s-${SESSION}`, 'broker.sock'),
      controlSocketPath: ch.socketPath,
      started: expect.any(String) as unknown,
      command: 'my-agent',
    })
  })

  test('the control socket is 0600 in the runtime dir, outside the session directory the sandbox mounts', async () => {
    const ch = await start()
    expect(dirname(ch.socketPath)).toBe(paths.runtimeDir)
    expect((await stat(ch.socketPath)).mode & 0o777).toBe(0o600)
    expect(ch.socketPath.startsWith(join(paths.runtimeDir, `s-${SESSION}`))).toBe(false)
  })

  test('stop() removes the registry entry and the socket', async () => {
    const ch = await start()
    await ch.stop()
    expect(await readdir(sessionsDir(paths))).toEqual([])
    await expect(stat(ch.socketPath)).rejects.toThrow()
  })

  test('listing prunes entries whose process has exited or whose control socket is gone', async () => {
    const dead = spawn(process.execPath, ['-e', ''])
    const pid = dead.pid ?? -1
    await new Promise((resolve) => dead.on('exit', resolve))
    await registerSession(paths, {
      id: 'deadbeefdeadbeef',
      pid,
      socketPath: '/nonexistent/broker.sock',
      controlSocketPath: join(paths.runtimeDir, 'control-deadbeefdeadbeef.sock'),
      started: new Date(0).toISOString(),
      command: null,
    })
    // A live pid (ours) whose control socket is gone: a crashed session whose pid was reused.
    await registerSession(paths, {
      id: 'reusedpid0000000',
      pid: process.pid,
      socketPath: '/nonexistent/broker.sock',
      controlSocketPath: join(paths.runtimeDir, 'control-reusedpid0000000.sock'),
      started: new Date(0).toISOString(),
      command: null,
    })
    await start()
    expect((await listSessions(paths)).map((s) => s.id)).toEqual([SESSION])
    expect(await readdir(sessionsDir(paths))).toEqual([`${SESSION}.json`])
  })

  test('malformed control requests get INVALID_REQUEST and the channel keeps serving', async () => {
    const ch = await start()
    const client = await RawClient.connect(ch.socketPath)
    for (const bad of [
      { id: '1', op: 'toString' },
      { id: '2', op: '__proto__' },
      { id: '3', op: 'grant', payload: { providers: [{ provider: 'x', buckets: 'all' }] } },
      { id: '4', op: 'grant', payload: { constructor: { prototype: { admin: true } } } },
      { id: '5', op: 'grant', payload: { keys: ['A'.repeat(10_000)] } },
      { id: '6', op: 'info', extra: true },
    ]) {
      client.send(bad)
      expect(await client.next()).toMatchObject({ id: bad.id, ok: false, code: 'INVALID_REQUEST' })
    }
    client.send({ id: '7', op: 'info' })
    expect(await client.next()).toMatchObject({ id: '7', ok: true, data: { session: SESSION } })
    expect(grants.snapshot()).toEqual({ providers: [{ provider: 'anthropic' }], keys: [], capabilities: ['read'] })
    client.close()
  })

  test('a frame over the control limit closes the connection before its body is read', async () => {
    const ch = await start()
    const client = await RawClient.connect(ch.socketPath)
    const header = Buffer.alloc(4)
    header.writeUInt32BE(MAX_CONTROL_FRAME_BYTES + 1)
    client.sendRaw(header)
    await client.waitClosed()
    expect(client.frames).toEqual([])
  })

  test.runIf(process.platform === 'linux' && process.getuid?.() === 0)(
    'a peer of another uid is refused and audited, even when the socket mode lets it connect',
    async () => {
      const ch = await start()
      await chmod(home, 0o755)
      await chmod(paths.runtimeDir, 0o755)
      await chmod(ch.socketPath, 0o777)
      const frame = encodeFrame({ id: 'x', op: 'grant', payload: { keys: ['*'], capabilities: ['save'] } }).toString('hex')
      const child = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, PEER_CLIENT, ch.socketPath, frame])
      let output = ''
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
      await new Promise((resolve) => child.on('exit', resolve))
      expect(output).toContain('connected')
      expect(output).not.toContain('data ')
      expect(grants.snapshot().keys).toEqual([])
      await audit?.flush()
      const lines = []
      for await (const line of readAuditEntries(auditLogPath(paths))) lines.push(line)
      expect(lines).toContainEqual(
        expect.objectContaining({ event: 'connection_refused', op: 'control', outcome: 'FORBIDDEN', reason: 'uid-mismatch', peer: expect.objectContaining({ uid: 65534 }) as unknown }),
      )
    },
  )
})

describe.runIf(process.platform === 'linux')('control channel and sandboxed peers', () => {
  test('a same-uid peer inside a bwrap sandbox that reaches the control socket is refused and audited', async () => {
    const ch = await start()
    const frame = encodeFrame({ id: 'x', op: 'grant', payload: { keys: ['*'], capabilities: ['save'] } }).toString('hex')
    // The runtime dir bound in on purpose: what a sandbox could do if a mount ever exposed it.
    const bwrap = ['--unshare-all', '--die-with-parent', '--ro-bind', '/', '/', '--bind', home, home, '--proc', '/proc', '--dev', '/dev']
    const child = spawn('bwrap', [...bwrap, '--', process.execPath, PEER_CLIENT, ch.socketPath, frame])
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
    await new Promise((resolve) => child.on('exit', resolve))
    expect(output).toContain('connected')
    expect(output).not.toContain('data ')
    expect(grants.snapshot().keys).toEqual([])
    await audit?.flush()
    const lines = []
    for await (const line of readAuditEntries(auditLogPath(paths))) lines.push(line)
    expect(lines).toContainEqual(expect.objectContaining({ event: 'connection_refused', op: 'control', outcome: 'FORBIDDEN', reason: 'inside-sandbox' }))
    // The same request from the host is served.
    const host = spawn(process.execPath, [PEER_CLIENT, ch.socketPath, encodeFrame({ id: 'y', op: 'info' }).toString('hex')])
    let hostOutput = ''
    host.stdout.on('data', (chunk: Buffer) => {
      hostOutput += chunk.toString()
      if (hostOutput.includes('data ')) host.kill()
    })
    await new Promise((resolve) => host.on('exit', resolve))
    expect(hostOutput).toContain('data ')
  })
})

describe('credproxy sessions / grant / revoke', () => {
  test('sessions --json lists running sessions with grants and peers', async () => {
    await start()
    const { code, out } = await cli('sessions', '--json')
    expect(code).toBe(0)
    const sessions = JSON.parse(out) as Array<Record<string, unknown>>
    expect(sessions).toHaveLength(1)
    expect(sessions[0]).toMatchObject({
      id: SESSION,
      pid: process.pid,
      command: 'my-agent',
      reachable: true,
      grants: { providers: [{ provider: 'anthropic' }], keys: [], capabilities: ['read'] },
      peers: [{ pid: 4321, uid: 1000 }],
    })
  })

  test.runIf(process.platform === 'linux')('sessions shows which sandbox each connected peer belongs to', async () => {
    // This test process is the peer; its parent stands in for the launched sandbox it runs under.
    const session = await startSecureSession({ grants: { providers: [], keys: [], capabilities: ['read'] }, sandboxPids: [process.ppid] })
    try {
      const client = session.client()
      expect(await client.request('list_providers', {})).toEqual({ providers: [] })
      const io = captureIO(session.env)
      expect(await main(['sessions'], io)).toBe(0)
      expect(io.stdoutText()).toContain(`pid ${process.pid} uid ${process.getuid?.()} sandbox ${process.ppid}`)
      const json = captureIO(session.env)
      expect(await main(['sessions', '--json'], json)).toBe(0)
      expect(JSON.parse(json.stdoutText())).toMatchObject([{ id: session.sessionId, peers: [{ pid: process.pid, sandboxPid: process.ppid }] }])
      await session.audit.flush()
      const audit = captureIO(session.env)
      expect(await main(['audit', '--session', session.sessionId], audit)).toBe(0)
      expect(audit.stdoutText()).toContain(`sandbox ${process.ppid}  list_providers`)
    } finally {
      await session.cleanup()
    }
  })

  test('sessions prints a readable list, and says how to start one when there is none', async () => {
    expect((await cli('sessions')).out).toContain('No running sessions.')
    await start()
    const { out } = await cli('sessions')
    expect(out).toContain(`session ${SESSION}`)
    expect(out).toContain('anthropic (all buckets)')
    expect(out).toContain('pid 4321 uid 1000 sandbox 4300')
  })

  test('grant changes the running session at once and is audited; revoke takes it back', async () => {
    await start()
    expect(grants.checkKey('OPENAI_API_KEY').ok).toBe(false)
    const granted = await cli('grant', '--session', SESSION, '--provider', 'gemini:work', '--key', 'OPENAI_API_KEY', '--capability', 'save')
    expect(granted.code).toBe(0)
    expect(granted.out).toContain('gemini:work')
    expect(grants.checkKey('OPENAI_API_KEY').ok).toBe(true)
    expect(grants.checkProvider('gemini', 'work', 'save').ok).toBe(true)
    expect(grants.checkProvider('gemini', 'personal', 'read').ok).toBe(false)

    const revoked = await cli('revoke', '--session', SESSION, '--key', 'OPENAI_API_KEY', '--json')
    expect(revoked.code).toBe(0)
    expect(JSON.parse(revoked.out)).toMatchObject({ session: SESSION, grants: { keys: [] } })
    expect(grants.checkKey('OPENAI_API_KEY').ok).toBe(false)

    await audit?.flush()
    const changes = []
    for await (const line of readAuditEntries(auditLogPath(paths))) if (line.event === 'grant_changed') changes.push(line)
    expect(changes).toEqual([
      expect.objectContaining({ op: 'grant', provider: 'gemini', bucket: 'work', session: SESSION }),
      expect.objectContaining({ op: 'grant', key: 'OPENAI_API_KEY' }),
      expect.objectContaining({ op: 'grant', reason: 'capability:save' }),
      expect.objectContaining({ op: 'revoke', key: 'OPENAI_API_KEY' }),
    ])
  })

  test('grant of a key not stored on the host still grants it, with a note naming `credproxy key set`', async () => {
    await start()
    const stores = await openHostStores({ env: { CREDPROXY_HOME: home, CREDPROXY_KEYRING: 'off' }, paths })
    await stores.keys.saveKey('STORED_KEY', 'v')
    const granted = await cli('grant', '--session', SESSION, '--key', 'STORED_KEY', '--key', 'MISSING_KEY')
    expect(granted.code).toBe(0)
    expect(grants.checkKey('MISSING_KEY').ok).toBe(true)
    expect(granted.err).toBe('credproxy: note: no API key named MISSING_KEY is stored on the host yet; the sandbox gets it once you run: credproxy key set MISSING_KEY\n')
  })

  test('a revoke the session cannot apply is refused with the reason', async () => {
    await start()
    const { code, err } = await cli('revoke', '--session', SESSION, '--provider', 'anthropic:default')
    expect(code).toBe(2)
    expect(err).toContain('revoke the provider')
    expect(grants.checkProvider('anthropic', 'default', 'read').ok).toBe(true)
  })

  test('an unknown session says so and points at `credproxy sessions`', async () => {
    await start()
    const { code, err } = await cli('grant', '--session', 'ffffffffffffffff', '--provider', 'anthropic')
    expect(code).toBe(3)
    expect(err).toContain('no running session has id ffffffffffffffff')
    expect(err).toContain('credproxy sessions')
  })

  test('--session takes a unique start of the id; an ambiguous start lists the matches', async () => {
    await start()
    const granted = await cli('grant', '--session', SESSION.slice(0, 4), '--key', 'PREFIX_KEY')
    expect(granted.code).toBe(0)
    expect(granted.out).toContain(`session ${SESSION} now has`)
    expect(grants.checkKey('PREFIX_KEY').ok).toBe(true)
    // A second running session whose id starts the same way.
    const other = 'a1b2999999999999'
    const second = await startControlChannel(
      { sessionId: other, grants: new SessionGrants(other, { providers: [], keys: [], capabilities: ['read'] }), socketPath: join(paths.runtimeDir, `s-${other}`, 'broker.sock'), peers: () => [] },
      paths,
      {},
    )
    try {
      const ambiguous = await cli('grant', '--session', 'a1b2', '--key', 'K')
      expect(ambiguous.code).toBe(2)
      expect(ambiguous.err).toContain(`2 running sessions have ids starting with a1b2: `)
      expect(ambiguous.err).toContain(SESSION)
      expect(ambiguous.err).toContain(other)
      expect((await cli('grant', '--session', 'a1b2c', '--key', 'K2')).code).toBe(0)
    } finally {
      await second.stop()
    }
  })

  test('usage errors name the problem and the next command', async () => {
    expect(await cli('grant', '--provider', 'anthropic')).toMatchObject({ code: 2, err: expect.stringContaining('--session ID is required') as unknown })
    expect(await cli('grant', '--session', SESSION)).toMatchObject({ code: 2, err: expect.stringContaining('nothing to grant') as unknown })
    expect(await cli('grant', '--session', SESSION, '--capability', 'root')).toMatchObject({ code: 2, err: expect.stringContaining('read, login, save') as unknown })
    expect(await cli('revoke', '--session', SESSION, '--provider', 'bad name!')).toMatchObject({ code: 2, err: expect.stringContaining('PROVIDER:BUCKET') as unknown })
    expect(await cli('grant', '--session', '../../etc/passwd', '--key', 'K')).toMatchObject({ code: 2, err: expect.stringContaining('credproxy sessions') as unknown })
    expect(grantCommand.help).toContain('Examples:')
  })
})
