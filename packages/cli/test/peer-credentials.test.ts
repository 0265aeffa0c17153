import { spawn, type ChildProcess } from 'node:child_process'
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer, connect, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import type { PeerCheck, PeerDecision } from '../src/broker/hooks.js'
import {
  attributeToSandbox,
  createPeerCheck,
  parentPid,
  peerCredentialsSupported,
  readPeerCredentials,
} from '../src/broker/peer-credentials.js'

const PEER_CLIENT = fileURLToPath(new URL('./fixtures/peer-client.mjs', import.meta.url))
const isRoot = process.getuid?.() === 0
const NOBODY = 65534

let dir: string
let socketPath: string
let server: Server | undefined
const children: ChildProcess[] = []

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cp-peer-'))
  socketPath = join(dir, 's.sock')
})

afterEach(async () => {
  for (const child of children.splice(0)) child.kill('SIGKILL')
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()))
  server = undefined
  await rm(dir, { recursive: true, force: true })
})

/** A real listener that runs `onAccept` on each accepted socket, then closes it. */
async function listen<T>(onAccept: (socket: Socket) => T): Promise<{ next: () => Promise<T> }> {
  const waiting: Array<(value: T) => void> = []
  const ready: T[] = []
  server = createServer((socket) => {
    const value = onAccept(socket)
    socket.destroy()
    const resolve = waiting.shift()
    if (resolve) resolve(value)
    else ready.push(value)
  })
  await new Promise<void>((resolve) => server?.listen(socketPath, resolve))
  return {
    next: () =>
      new Promise<T>((resolve) => {
        const value = ready.shift()
        if (value !== undefined) resolve(value)
        else waiting.push(resolve)
      }),
  }
}

function run(command: string, args: string[]): ChildProcess {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  return child
}

async function checkWith(check: PeerCheck, command: string, args: string[]): Promise<{ decision: PeerDecision; child: ChildProcess }> {
  const accepted = await listen((socket) => check(socket))
  const child = run(command, args)
  return { decision: await accepted.next(), child }
}

describe.runIf(process.platform === 'linux')('readPeerCredentials (SO_PEERCRED)', () => {
  test('is available on Linux through the prebuilt FFI, with no compiler', () => {
    expect(peerCredentialsSupported()).toBe(true)
  })

  test('reports the pid, uid and gid of an in-process client', async () => {
    const accepted = await listen((socket) => readPeerCredentials(socket))
    const client = connect(socketPath)
    client.on('error', () => undefined)
    expect(await accepted.next()).toEqual({ pid: process.pid, uid: process.getuid?.(), gid: process.getgid?.() })
  })

  test('reports the pid of a separate client process, as `ps` shows it', async () => {
    const accepted = await listen((socket) => readPeerCredentials(socket))
    const child = run(process.execPath, [PEER_CLIENT, socketPath])
    const peer = await accepted.next()
    expect(peer?.pid).toBe(child.pid)
    expect(peer?.uid).toBe(process.getuid?.())
  })

  test('returns null for a socket that is already closed instead of throwing', async () => {
    const accepted = await listen((socket) => {
      socket.destroy()
      return readPeerCredentials(socket)
    })
    connect(socketPath).on('error', () => undefined)
    expect(await accepted.next()).toBeNull()
  })
})

describe.runIf(process.platform === 'linux' && isRoot)('createPeerCheck: uid', () => {
  test('refuses a peer running as another uid even when the socket permissions let it connect', async () => {
    await chmod(dir, 0o755)
    const check = createPeerCheck()
    const accepted = await listen((socket) => check(socket))
    await chmod(socketPath, 0o777)
    run('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, PEER_CLIENT, socketPath])
    const decision = await accepted.next()
    expect(decision).toMatchObject({ ok: false, reason: 'uid-mismatch', peer: { uid: NOBODY, gid: NOBODY } })
  })

  test('admits another uid that the operator allowlisted', async () => {
    await chmod(dir, 0o755)
    const check = createPeerCheck({ allowedUids: [NOBODY] })
    const accepted = await listen((socket) => check(socket))
    await chmod(socketPath, 0o777)
    run('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, PEER_CLIENT, socketPath])
    expect(await accepted.next()).toMatchObject({ ok: true, peer: { uid: NOBODY } })
  })

  test('admits a peer of the same uid when no sandbox was launched', async () => {
    const { decision, child } = await checkWith(createPeerCheck(), process.execPath, [PEER_CLIENT, socketPath])
    expect(decision).toEqual({ ok: true, peer: { pid: child.pid, uid: process.getuid?.(), gid: process.getgid?.() } })
  })
})

describe.runIf(process.platform === 'linux')('createPeerCheck: sandbox attribution', () => {
  test('admits a descendant of a launched sandbox and records which sandbox it belongs to', async () => {
    let sandboxPid = -1
    const check = createPeerCheck({ sandboxPids: () => [sandboxPid] })
    const accepted = await listen((socket) => check(socket))
    const sandbox = run('sh', ['-c', `"${process.execPath}" "${PEER_CLIENT}" "${socketPath}"; true`])
    sandboxPid = sandbox.pid ?? -1
    const decision = await accepted.next()
    expect(decision.ok).toBe(true)
    expect(decision.peer).toMatchObject({ sandboxPid: sandbox.pid })
    expect(decision.peer?.pid).not.toBe(sandbox.pid)
  })

  test('refuses a same-uid process outside every launched sandbox', async () => {
    const sandbox = run('sleep', ['30'])
    const check = createPeerCheck({ sandboxPids: () => [sandbox.pid ?? -1] })
    const { decision } = await checkWith(check, process.execPath, [PEER_CLIENT, socketPath])
    expect(decision).toMatchObject({ ok: false, reason: 'outside-sandbox' })
  })

  test.runIf(isRoot)('admits a process in the sandbox pid namespace that is not a descendant (nsenter)', async () => {
    // unshare is the launched process (host namespace); its child is pid 1 of the new namespace.
    const launcher = run('unshare', ['--pid', '--fork', '--kill-child', 'sleep', '30'])
    const inner = await firstChild(launcher.pid ?? -1)
    const joined = ['--target', String(inner), '--pid', '--', process.execPath, PEER_CLIENT, socketPath]

    const byInnerPid = createPeerCheck({ sandboxPids: () => [inner] })
    const first = await listen((socket) => byInnerPid(socket))
    run('nsenter', joined)
    expect(await first.next()).toMatchObject({ ok: true, peer: { sandboxPid: inner } })
    await new Promise<void>((resolve) => server?.close(() => resolve()))

    // The launcher itself lives in the host namespace: sharing it must not admit anyone.
    const byLauncher = createPeerCheck({ sandboxPids: () => [launcher.pid ?? -1] })
    const second = await listen((socket) => byLauncher(socket))
    run('nsenter', joined)
    expect(await second.next()).toMatchObject({ ok: false, reason: 'outside-sandbox' })
  })

  test('never attributes a peer to a sandbox through the server own pid namespace', () => {
    const unrelated = run('sleep', ['30'])
    expect(attributeToSandbox(process.pid, [unrelated.pid ?? -1])).toBeNull()
    expect(attributeToSandbox(process.pid, [process.ppid])).toBe(process.ppid)
  })
})

describe('parentPid', () => {
  test('reads the parent even when the command name holds spaces and parentheses', async () => {
    const procRoot = join(dir, 'proc')
    await mkdir(join(procRoot, '4242'), { recursive: true })
    await writeFile(join(procRoot, '4242', 'stat'), '4242 (evil) S 1 (x) S 7 7 7 0 -1\n')
    expect(parentPid(4242, procRoot)).toBe(7)
    expect(parentPid(4343, procRoot)).toBeNull()
  })

  test.runIf(process.platform === 'linux')('matches the kernel for this process', () => {
    expect(parentPid(process.pid)).toBe(process.ppid)
  })
})

async function firstChild(pid: number): Promise<number> {
  // The forked child appears shortly after unshare starts; wait for it without a timed assertion.
  for (;;) {
    const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')
    const child = Number(text.trim().split(' ')[0])
    if (Number.isInteger(child) && child > 0) return child
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
