// `credproxy serve`: in-process with an injected shutdown, and as a real child
// process (built JS) that a sandboxed program reaches through the core factories.
// Real host file store: CREDPROXY_HOME=<mkdtemp>, CREDPROXY_KEYRING=off.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { PassThrough } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, test } from 'vitest'
import { parseSessionSecret } from '@credproxy/core'
import type { CliIO } from '../src/cli-io.js'
import { createServeCommand } from '../src/commands/serve.js'
import { EXIT } from '../src/exit-codes.js'
import { resolvePaths } from '../src/paths.js'
import { openHostStores } from '../src/storage/index.js'
import { TOKEN } from './helpers/server-fixture.js'
import { RawClient } from './helpers/server-raw-client.js'

const here = dirname(fileURLToPath(import.meta.url))
const BIN = join(here, '..', 'bin', 'credproxy.js')
const FIXTURE = join(here, 'fixtures', 'serve-client.mjs')

const cleanups: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f()
})

const exists = (p: string): Promise<boolean> => stat(p).then(() => true, () => false)

async function home(): Promise<{ dir: string; env: NodeJS.ProcessEnv }> {
  const dir = await mkdtemp(join(tmpdir(), 'cpv-'))
  cleanups.push(() => rm(dir, { recursive: true, force: true }))
  const env = { ...process.env, CREDPROXY_HOME: dir, CREDPROXY_KEYRING: 'off' }
  const stores = await openHostStores({ env, paths: resolvePaths(env), log: () => undefined })
  await stores.tokens.saveToken('anthropic', TOKEN)
  await stores.keys.saveKey('OPENAI_API_KEY', 'sk-served')
  await stores.keys.saveKey('NOT_GRANTED_KEY', 'sk-hidden')
  return { dir, env }
}

function streams(env: NodeJS.ProcessEnv): { io: CliIO; out: () => string; err: () => string; nextLine: () => Promise<string> } {
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  let out = ''
  let err = ''
  const waiters: Array<() => void> = []
  stdout.on('data', (c: Buffer) => {
    out += c.toString()
    for (const w of waiters.splice(0)) w()
  })
  stderr.on('data', (c: Buffer) => (err += c.toString()))
  return {
    io: { stdin: new PassThrough(), stdout, stderr, env, cwd: process.cwd() },
    out: () => out,
    err: () => err,
    nextLine: async () => {
      while (!out.includes('\n')) await new Promise<void>((resolve) => waiters.push(resolve))
      return out.slice(0, out.indexOf('\n'))
    },
  }
}

describe('credproxy serve (in-process)', () => {
  test('prints one ready line, serves its grants to a v3 client holding the secret file, and cleans up', async () => {
    const { dir, env } = await home()
    const s = streams(env)
    let stop!: () => void
    const secretFile = join(dir, 'session.secret')
    const command = createServeCommand({ waitForShutdown: () => new Promise<void>((resolve) => (stop = resolve)) })
    const running = command.run(['--grant', 'anthropic', '--grant-key', 'OPENAI_API_KEY', '--secret-file', secretFile], s.io)
    const ready = JSON.parse(await s.nextLine()) as { socket: string; pid: number; session: string }
    expect(ready).toEqual({ socket: expect.any(String), pid: process.pid, session: expect.any(String) })
    expect(ready.socket).toBe(join(resolvePaths(env).runtimeDir, ready.session, 'broker.sock'))
    expect((await stat(secretFile)).mode & 0o777).toBe(0o600)
    const secret = parseSessionSecret(await readFile(secretFile, 'utf8'))

    const c = await RawClient.connect(ready.socket)
    expect(await c.handshakeV3(secret)).toMatchObject({ ok: true, data: { session: ready.session } })
    expect((await c.request('get_token', { provider: 'anthropic' }))['data']).toMatchObject({ access_token: 'at-visible-1' })
    expect((await c.request('get_api_key', { name: 'OPENAI_API_KEY' }))['data']).toEqual({ key: 'sk-served' })
    expect(await c.request('get_api_key', { name: 'NOT_GRANTED_KEY' })).toMatchObject({ code: 'NOT_GRANTED' })
    // Default capabilities are read and login: no overwrites from inside without --allow-save.
    expect(await c.request('remove_token', { provider: 'anthropic' })).toMatchObject({ code: 'NOT_GRANTED' })
    expect(c.receivedText()).not.toContain(TOKEN.refresh_token)

    stop()
    expect(await running).toBe(EXIT.OK)
    expect(s.out().trim().split('\n')).toHaveLength(1)
    expect(await exists(ready.socket)).toBe(false)
    expect(await exists(dirname(ready.socket))).toBe(false)
    expect(await exists(secretFile)).toBe(false)
    expect(s.err()).not.toContain(secret.toString('hex'))
  })

  test('--secret-file refuses to overwrite an existing file, and leaves nothing listening', async () => {
    const { dir, env } = await home()
    const s = streams(env)
    const secretFile = join(dir, 'taken')
    await writeFile(secretFile, 'precious')
    const command = createServeCommand({ waitForShutdown: () => new Promise<void>(() => undefined) })
    await expect(command.run(['--secret-file', secretFile], s.io)).rejects.toThrow('refusing to overwrite')
    expect(await readFile(secretFile, 'utf8')).toBe('precious')
    expect(s.out()).toBe('')
    const runtime = resolvePaths(env).runtimeDir
    const { readdir } = await import('node:fs/promises')
    expect((await readdir(runtime)).filter((n) => !n.startsWith('control-'))).toEqual([])
  })

  test('--legacy-token-file serves a v1 client (llxprt-code shape) presenting that token', async () => {
    const { dir, env } = await home()
    const s = streams(env)
    const tokenFile = join(dir, 'legacy.token')
    await writeFile(tokenFile, `${'c'.repeat(64)}\n`, { mode: 0o600 })
    let stop!: () => void
    const command = createServeCommand({ waitForShutdown: () => new Promise<void>((resolve) => (stop = resolve)) })
    const running = command.run(['--grant-all', '--legacy-token-file', tokenFile], s.io)
    const ready = JSON.parse(await s.nextLine()) as { socket: string }
    const c = await RawClient.connect(ready.socket)
    c.send({ v: 1, op: 'handshake', payload: { minVersion: 1, maxVersion: 1, capabilityToken: 'c'.repeat(64) } })
    expect(await c.next()).toMatchObject({ ok: true, data: { version: 1 } })
    expect((await c.request('get_api_key', { name: 'NOT_GRANTED_KEY' }, 1))['data']).toEqual({ key: 'sk-hidden' })
    c.close()
    stop()
    expect(await running).toBe(EXIT.OK)
  })

  test('bad flags are usage errors', async () => {
    const { env } = await home()
    const command = createServeCommand({ waitForShutdown: () => Promise.resolve() })
    await expect(command.run(['--grant', 'bad name'], streams(env).io)).rejects.toThrow('--grant takes PROVIDER')
    await expect(command.run(['--nope'], streams(env).io)).rejects.toThrow()
  })
})

describe('credproxy serve (child process)', () => {
  test('a sandboxed program gets a token and a key via the core factories; SIGTERM removes the socket', async () => {
    const { dir, env } = await home()
    const secretFile = join(dir, 'child.secret')
    const child: ChildProcess = spawn(
      process.execPath,
      [BIN, 'serve', '--grant', 'anthropic', '--grant-key', 'OPENAI_API_KEY', '--secret-file', secretFile],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    )
    cleanups.push(async () => {
      if (child.exitCode === null) child.kill('SIGKILL')
    })
    let out = ''
    const line = await new Promise<string>((resolve, reject) => {
      child.stdout?.on('data', (c: Buffer) => {
        out += c.toString()
        if (out.includes('\n')) resolve(out.slice(0, out.indexOf('\n')))
      })
      child.once('exit', (code) => reject(new Error(`serve exited early with ${code}`)))
    })
    const ready = JSON.parse(line) as { socket: string; pid: number }
    expect(ready.pid).toBe(child.pid)

    const program = spawn(process.execPath, [FIXTURE], {
      env: { ...process.env, CREDPROXY_SOCKET: ready.socket, CREDPROXY_SECRET_FILE: secretFile },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let programOut = ''
    program.stdout.on('data', (c: Buffer) => (programOut += c.toString()))
    const code = await new Promise<number | null>((resolve) => program.once('exit', resolve))
    expect(code).toBe(0)
    const got = JSON.parse(programOut) as { token: Record<string, unknown>; key: string; denied: string }
    expect(got.token).toMatchObject({ access_token: 'at-visible-1', account: 'me@example.com' })
    expect(got.key).toBe('sk-served')
    expect(got.denied).toBe('NOT_GRANTED')
    expect(programOut).not.toContain(TOKEN.refresh_token)
    expect(programOut).not.toContain(TOKEN.client_secret)

    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
    child.kill('SIGTERM')
    expect(await exited).toBe(0)
    expect(await exists(ready.socket)).toBe(false)
    expect(await exists(dirname(ready.socket))).toBe(false)
  })
})
