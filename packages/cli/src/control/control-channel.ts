// The host-only control channel of one broker session: a 0600 socket in the runtime
// dir (never in the session directory mounted into the sandbox), same framing as
// the broker, ops info/grant/revoke, peers of the same uid only. It is what
// `credproxy sessions|grant|revoke` talk to. Threat model: dev-docs/security.md.
import { chmod, unlink } from 'node:fs/promises'
import { createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { encodeFrame, FrameDecoder, type ErrorCode } from '@credproxy/core'
import * as z from 'zod'
import { ensurePrivateDir, PRIVATE_FILE_MODE } from '../fs-private.js'
import type { CredproxyPaths } from '../paths.js'
import { GrantChangeSchema, type GrantChange, type SessionGrants } from '../broker/grants.js'
import type { AuditSink, PeerInfo } from '../broker/hooks.js'
import { attributeToSandbox, inOwnPidNamespace, peerCredentialsSupported, readPeerCredentials, type SecurityLog } from '../broker/peer-credentials.js'
import { registerSession, unregisterSession } from './session-registry.js'

/** Control messages are small; anything larger is a mistake or an attack. */
export const MAX_CONTROL_FRAME_BYTES = 65_536
/** Control connections open at once; more are closed on accept. */
export const MAX_CONTROL_CONNECTIONS = 8
/** A control connection idle this long is closed. */
export const CONTROL_IDLE_TIMEOUT_MS = 10_000

export const CONTROL_OPS = ['info', 'grant', 'revoke'] as const
export type ControlOp = (typeof CONTROL_OPS)[number]

export const ControlRequestSchema = z.strictObject({
  id: z.string().min(1).max(64),
  op: z.enum(CONTROL_OPS),
  payload: z.unknown().optional(),
})

export const ControlResponseSchema = z.union([
  z.looseObject({ id: z.string(), ok: z.literal(true), data: z.unknown() }),
  z.looseObject({ id: z.string(), ok: z.literal(false), code: z.string(), error: z.string() }),
])

/** What the control channel needs from a running CredentialProxyServer. */
export interface ControlTarget {
  readonly sessionId: string
  readonly grants: SessionGrants
  readonly socketPath: string
  /** Connected peers, as the server reports them; must be JSON-serializable. */
  peers(): unknown
}

export interface ControlChannelOptions {
  /** The sandboxed command line; only argv[0] is recorded (later arguments may hold secrets). */
  command?: readonly string[]
  audit?: AuditSink
  log?: SecurityLog
  /** This session's sandbox pids: a peer descending from one is refused (it is inside). */
  sandboxPids?: () => readonly number[]
}

export interface ControlChannel {
  readonly socketPath: string
  readonly registryPath: string
  /** Close the socket and remove the socket file and the registry entry. */
  stop(): Promise<void>
}

export function controlSocketPath(paths: CredproxyPaths, sessionId: string): string {
  return join(paths.runtimeDir, `control-${sessionId}.sock`)
}

type ControlAnswer = { ok: true; data: unknown } | { ok: false; code: ErrorCode; error: string }

function handleRequest(target: ControlTarget, op: ControlOp, payload: unknown, audit: AuditSink | undefined): ControlAnswer {
  if (op === 'info') {
    if (payload !== undefined && (typeof payload !== 'object' || payload === null || Object.keys(payload).length > 0)) {
      return { ok: false, code: 'INVALID_REQUEST', error: 'info takes no payload' }
    }
    return {
      ok: true,
      data: { session: target.sessionId, socketPath: target.socketPath, grants: target.grants.snapshot(), peers: target.peers() },
    }
  }
  const parsed = GrantChangeSchema.safeParse(payload ?? {})
  if (!parsed.success) {
    return { ok: false, code: 'INVALID_REQUEST', error: `invalid ${op} payload: ${z.prettifyError(parsed.error)}` }
  }
  const change = parsed.data as GrantChange
  try {
    if (op === 'grant') target.grants.grant(change)
    else target.grants.revoke(change)
  } catch (error) {
    return { ok: false, code: 'INVALID_REQUEST', error: error instanceof Error ? error.message : String(error) }
  }
  auditChange(audit, target.sessionId, op, change)
  return { ok: true, data: { grants: target.grants.snapshot() } }
}

// One line per granted or revoked item, so `credproxy audit` shows exactly what changed.
function auditChange(audit: AuditSink | undefined, session: string, op: 'grant' | 'revoke', change: GrantChange): void {
  if (audit === undefined) return
  const base = { session, event: 'grant_changed', op, outcome: 'ok' } as const
  for (const { provider, buckets } of change.providers ?? []) {
    if (buckets === undefined) audit.write({ ...base, provider })
    else for (const bucket of buckets) audit.write({ ...base, provider, bucket })
  }
  for (const key of change.keys ?? []) audit.write({ ...base, key })
  for (const capability of change.capabilities ?? []) audit.write({ ...base, reason: `capability:${capability}` })
  for (const rule of change.egress ?? []) audit.write({ ...base, reason: `egress:${rule}` })
}

function serveConnection(socket: Socket, target: ControlTarget, options: ControlChannelOptions): void {
  const decoder = new FrameDecoder({ maxFrameBytes: MAX_CONTROL_FRAME_BYTES })
  socket.setTimeout(CONTROL_IDLE_TIMEOUT_MS, () => socket.destroy())
  socket.on('error', () => socket.destroy())
  socket.on('data', (chunk: Buffer) => {
    let frames: Record<string, unknown>[]
    try {
      frames = decoder.push(chunk)
    } catch {
      socket.destroy()
      return
    }
    for (const frame of frames) {
      const request = ControlRequestSchema.safeParse(frame)
      const id = typeof frame['id'] === 'string' ? frame['id'].slice(0, 64) : ''
      const answer: ControlAnswer = request.success
        ? handleRequest(target, request.data.op, request.data.payload, options.audit)
        : { ok: false, code: 'INVALID_REQUEST', error: 'control request must be {id, op: info|grant|revoke, payload?}' }
      try {
        socket.write(encodeFrame({ id, ...answer }, MAX_CONTROL_FRAME_BYTES))
      } catch {
        socket.write(encodeFrame({ id, ok: false, code: 'RESPONSE_TOO_LARGE', error: 'answer too large' }))
      }
    }
  })
}

/**
 * Why a control peer is refused, or null. Besides another uid: any process inside a
 * sandbox, this session's (by ancestry) or any other (its own pid namespace): grants
 * are changed from the host only, even if a sandbox reached the socket.
 */
function controlRefusal(peer: PeerInfo | null, ownUid: number | null, sandboxPids: readonly number[]): string | null {
  if (peer === null) return 'peer-unreadable'
  if (ownUid !== null && peer.uid !== ownUid) return 'uid-mismatch'
  if (process.platform === 'linux' && !inOwnPidNamespace(peer.pid)) return 'inside-sandbox'
  if (sandboxPids.length > 0 && attributeToSandbox(peer.pid, sandboxPids) !== null) return 'inside-sandbox'
  return null
}

/**
 * Listen on `<runtimeDir>/control-<sessionId>.sock` (0600) and register the
 * session in `<stateDir>/sessions/<sessionId>.json` (0600). Only peers of this
 * process's uid are served; others are closed at once and audited.
 */
export async function startControlChannel(
  target: ControlTarget,
  paths: CredproxyPaths,
  options: ControlChannelOptions = {},
): Promise<ControlChannel> {
  await ensurePrivateDir(paths.runtimeDir)
  const socketPath = controlSocketPath(paths, target.sessionId)
  // Session ids are unique, so a file already there is a leftover of a crashed run.
  await unlink(socketPath).catch(() => undefined)
  const ownUid = typeof process.getuid === 'function' ? process.getuid() : null
  const checkPeers = peerCredentialsSupported()
  if (!checkPeers) {
    options.log?.(`credproxy: warning: peer credentials cannot be read on ${process.platform}; the control socket relies on its 0600 mode`)
  }
  const open = new Set<Socket>()

  const server: Server = createServer((socket) => {
    if (checkPeers) {
      const peer = readPeerCredentials(socket)
      const reason = controlRefusal(peer, ownUid, options.sandboxPids?.() ?? [])
      if (reason !== null) {
        options.audit?.write({ session: target.sessionId, event: 'connection_refused', peer, op: 'control', outcome: 'FORBIDDEN', reason })
        socket.destroy()
        return
      }
    }
    if (open.size >= MAX_CONTROL_CONNECTIONS) {
      socket.destroy()
      return
    }
    open.add(socket)
    socket.on('close', () => open.delete(socket))
    serveConnection(socket, target, options)
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(socketPath, () => {
      server.off('error', reject)
      resolve()
    })
  })
  server.on('error', (error) => options.log?.(`credproxy: control socket ${socketPath}: ${error.message}`))
  await chmod(socketPath, PRIVATE_FILE_MODE)

  let registryPath: string
  try {
    registryPath = await registerSession(paths, {
      id: target.sessionId,
      pid: process.pid,
      socketPath: target.socketPath,
      controlSocketPath: socketPath,
      started: new Date().toISOString(),
      command: options.command?.[0] ?? null,
    })
  } catch (error) {
    server.close()
    await unlink(socketPath).catch(() => undefined)
    throw error
  }

  let stopped: Promise<void> | undefined
  return {
    socketPath,
    registryPath,
    stop(): Promise<void> {
      stopped ??= (async () => {
        await unregisterSession(paths, target.sessionId)
        for (const socket of open) socket.destroy()
        await new Promise<void>((resolve) => server.close(() => resolve()))
        await unlink(socketPath).catch(() => undefined)
      })()
      return stopped
    },
  }
}
