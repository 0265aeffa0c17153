// Seams between the connection machinery (credential-proxy-server.ts) and the
// security modules (peer credentials, audit log), so each can be read and tested alone.
import type { Socket } from 'node:net'
import type { ErrorCode } from '@credproxy/core'

/** Who is on the other end of a connection, as the host kernel reports it. */
export interface PeerInfo {
  pid: number
  uid: number
  gid: number
  /** The launched sandbox (its pid) the peer was attributed to, when the server launched any. */
  sandboxPid?: number
}

export type PeerDecision =
  | { ok: true; peer: PeerInfo | null }
  /** reason goes to the host log and the audit log, never to the peer. */
  | { ok: false; peer: PeerInfo | null; reason: string }

/** Decides, right after accept and before any byte is read, whether a peer may talk to this session. */
export type PeerCheck = (socket: Socket) => PeerDecision

/** One audit line. Never carries a secret value: only names, codes and numbers. */
export interface AuditEntry {
  /** ISO time; filled in by the writer when absent. */
  time?: string
  session: string
  event: 'request' | 'connection_refused' | 'connection_evicted' | 'handshake_failed' | 'handshake_ok' | 'grant_changed' | 'egress' | 'source_run'
  peer?: PeerInfo | null
  op?: string
  provider?: string
  bucket?: string
  key?: string
  /** 'ok' or the error code answered. */
  outcome: 'ok' | ErrorCode
  durationMs?: number
  /** Short fixed reason for refusals (e.g. 'uid-mismatch', 'bad-proof'); never peer-supplied text. */
  reason?: string
  protocolVersion?: number
  /** A summary line: this many events like it were counted instead of written (audit-budget.ts). */
  count?: number
  /** event 'egress': one request through the egress proxy (path without query, never a value). */
  egress?: EgressAuditFields
  /** event 'source_run': one credential source command run on the host (never its arguments or output). */
  source?: SourceRunAuditFields
}

export interface SourceRunAuditFields {
  /** The program's file name (argv[0] without its directory). */
  program: string
  /** null when it did not exit by itself (timeout, output cap, could not start). */
  exitCode: number | null
}

export interface EgressAuditFields {
  rule?: string
  method: string
  host: string
  path: string
  status: number
  bytesIn: number
  bytesOut: number
  injected: boolean
}

export interface AuditSink {
  /** Must not throw and must not block the request path. */
  write(entry: AuditEntry): void
}
