// Who is on the other end of an accepted Unix socket, as the host kernel reports it,
// and the PeerCheck the server runs right after accept. Threat model: dev-docs/security.md.
import { readlinkSync } from 'node:fs'
import { openLibc } from '../libc.js'
import type { Socket } from 'node:net'
import { readProcStat } from '../proc-stat.js'
import type { PeerCheck, PeerDecision, PeerInfo } from './hooks.js'

/** SOL_SOCKET and SO_PEERCRED on Linux (asm-generic/socket.h). */
const LINUX_SOL_SOCKET = 1
const LINUX_SO_PEERCRED = 17
/** struct ucred { pid_t pid; uid_t uid; gid_t gid; }: three 32-bit fields. */
const LINUX_UCRED_BYTES = 12

/** SOL_LOCAL, LOCAL_PEERCRED and LOCAL_PEERPID on macOS (sys/un.h). */
const DARWIN_SOL_LOCAL = 0
const DARWIN_LOCAL_PEERCRED = 0x001
const DARWIN_LOCAL_PEERPID = 0x002
/** struct xucred { u_int cr_version; uid_t cr_uid; short cr_ngroups; gid_t cr_groups[16]; } with padding. */
const DARWIN_XUCRED_BYTES = 76
const DARWIN_XUCRED_UID_OFFSET = 4
const DARWIN_XUCRED_GROUPS_OFFSET = 12
const DARWIN_PID_BYTES = 4

/** How far up the process tree a peer's ancestry is walked before giving up. */
export const MAX_ANCESTRY_DEPTH = 128

export type SecurityLog = (line: string) => void

type GetSockOpt = (fd: number, level: number, name: number, value: Buffer, length: number[]) => number

interface Binding {
  platform: 'linux' | 'darwin'
  getsockopt: GetSockOpt
}

// The libc binding is loaded once per process on first use: loading it is the costly part.
let binding: Binding | null | undefined

function loadBinding(): Binding | null {
  if (binding !== undefined) return binding
  binding = null
  const platform = process.platform
  if (platform !== 'linux' && platform !== 'darwin') return binding
  try {
    const lib = openLibc()?.lib
    if (lib === undefined) return binding
    const getsockopt = lib.func(
      'int getsockopt(int fd, int level, int optname, _Out_ void *optval, _Inout_ uint32_t *optlen)',
    ) as unknown as GetSockOpt
    binding = { platform, getsockopt }
  } catch {
    binding = null
  }
  return binding
}

/** True when this platform has a way to read peer credentials (SO_PEERCRED or LOCAL_PEERCRED). */
export function peerCredentialsSupported(): boolean {
  return loadBinding() !== null
}

function socketFd(socket: Socket): number | null {
  // Node exposes no public accessor for an accepted socket's fd; the pipe handle holds it.
  const handle = (socket as unknown as { _handle?: { fd?: unknown } })._handle
  const fd = handle?.fd
  return typeof fd === 'number' && fd >= 0 ? fd : null
}

/**
 * pid, uid and gid of the peer of an accepted Unix socket, as the host kernel
 * reports them (pids in the host namespace even for peers in a child pid namespace).
 * null when the platform has no such call or the socket is already closed.
 */
export function readPeerCredentials(socket: Socket): PeerInfo | null {
  const lib = loadBinding()
  const fd = socketFd(socket)
  if (lib === null || fd === null) return null
  if (lib.platform === 'linux') {
    const ucred = Buffer.alloc(LINUX_UCRED_BYTES)
    const length = [LINUX_UCRED_BYTES]
    if (lib.getsockopt(fd, LINUX_SOL_SOCKET, LINUX_SO_PEERCRED, ucred, length) !== 0) return null
    if (length[0] !== LINUX_UCRED_BYTES) return null
    return { pid: ucred.readInt32LE(0), uid: ucred.readUInt32LE(4), gid: ucred.readUInt32LE(8) }
  }
  // macOS (not exercised by this repository's tests: no macOS machine runs them).
  const xucred = Buffer.alloc(DARWIN_XUCRED_BYTES)
  const credLength = [DARWIN_XUCRED_BYTES]
  if (lib.getsockopt(fd, DARWIN_SOL_LOCAL, DARWIN_LOCAL_PEERCRED, xucred, credLength) !== 0) return null
  const pidBuffer = Buffer.alloc(DARWIN_PID_BYTES)
  const pidLength = [DARWIN_PID_BYTES]
  const pid =
    lib.getsockopt(fd, DARWIN_SOL_LOCAL, DARWIN_LOCAL_PEERPID, pidBuffer, pidLength) === 0 ? pidBuffer.readInt32LE(0) : -1
  return {
    pid,
    uid: xucred.readUInt32LE(DARWIN_XUCRED_UID_OFFSET),
    gid: xucred.readUInt32LE(DARWIN_XUCRED_GROUPS_OFFSET),
  }
}

/** Parent pid from /proc/<pid>/stat; null when the process is gone or unreadable. */
export function parentPid(pid: number, procRoot = '/proc'): number | null {
  return readProcStat(pid, procRoot)?.ppid ?? null
}

function pidNamespace(pid: number | 'self', procRoot: string): string | null {
  try {
    return readlinkSync(`${procRoot}/${pid}/ns/pid`)
  } catch {
    return null
  }
}

/**
 * true when pid runs in this process's own pid namespace. A process in a sandbox
 * (bwrap, a container) never does; a pid of 0 (the kernel could not map the peer
 * into our namespace) or an unreadable namespace counts as foreign.
 */
export function inOwnPidNamespace(pid: number, procRoot = '/proc'): boolean {
  if (pid <= 0) return false
  const peerNs = pidNamespace(pid, procRoot)
  return peerNs !== null && peerNs === pidNamespace('self', procRoot)
}

/**
 * The launched sandbox pid this peer belongs to: the pid itself, an ancestor of the
 * peer, or a process sharing the peer's pid namespace (when that namespace is not
 * the server's own, which would admit every host process). null when none matches.
 */
export function attributeToSandbox(peerPid: number, sandboxPids: readonly number[], procRoot = '/proc'): number | null {
  if (peerPid <= 0) return null
  const wanted = new Set(sandboxPids)
  let pid: number | null = peerPid
  for (let depth = 0; pid !== null && pid > 0 && depth < MAX_ANCESTRY_DEPTH; depth++) {
    if (wanted.has(pid)) return pid
    pid = parentPid(pid, procRoot)
  }
  const peerNs = pidNamespace(peerPid, procRoot)
  const ownNs = pidNamespace('self', procRoot)
  if (peerNs === null || peerNs === ownNs) return null
  for (const sandboxPid of sandboxPids) {
    if (pidNamespace(sandboxPid, procRoot) === peerNs) return sandboxPid
  }
  return null
}

export interface PeerCheckOptions {
  /** uids admitted besides the server's own. */
  allowedUids?: readonly number[]
  /** pids of the sandboxes this server launched; when any, every peer must live in one of them. */
  sandboxPids?: () => readonly number[]
  log?: SecurityLog
  /** For tests of the /proc walk; defaults to /proc. */
  procRoot?: string
}

/**
 * The PeerCheck for CredentialProxyServer: refuse a peer of another uid (unless
 * allowlisted), and, when the server launched sandboxes, a peer outside all of them.
 * Reasons are fixed strings: they go to the host and audit logs, never to the peer.
 */
export function createPeerCheck(options: PeerCheckOptions = {}): PeerCheck {
  const ownUid = typeof process.getuid === 'function' ? process.getuid() : null
  const allowed = new Set(options.allowedUids ?? [])
  if (ownUid !== null) allowed.add(ownUid)
  const procRoot = options.procRoot ?? '/proc'
  let warned = false

  return (socket: Socket): PeerDecision => {
    if (!peerCredentialsSupported()) {
      // Nothing to check with here: the socket's 0600 mode in a 0700 directory is the only guard.
      if (!warned) {
        warned = true
        options.log?.(
          `credproxy: warning: peer credentials cannot be read on ${process.platform}; ` +
            'connections are not checked by uid or sandbox',
        )
      }
      return { ok: true, peer: null }
    }
    const peer = readPeerCredentials(socket)
    if (peer === null) return { ok: false, peer: null, reason: 'peer-unreadable' }
    if (!allowed.has(peer.uid)) return { ok: false, peer, reason: 'uid-mismatch' }
    const sandboxPids = options.sandboxPids?.() ?? []
    if (sandboxPids.length === 0) return { ok: true, peer }
    const sandboxPid = attributeToSandbox(peer.pid, sandboxPids, procRoot)
    if (sandboxPid === null) return { ok: false, peer, reason: 'outside-sandbox' }
    return { ok: true, peer: { ...peer, sandboxPid } }
  }
}
