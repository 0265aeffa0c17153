// The audit line format, both ways: formatAuditLine builds a line from an explicit field
// list, each value checked against its name rule, so no secret (or terminal escape) can
// slip in; AuditLineSchema reads lines back leniently. Threat model: dev-docs/security.md.
import { join } from 'node:path'
import { KEY_NAME_PATTERN, PROVIDER_NAME_PATTERN, isErrorCode } from '@credproxy/core'
import * as z from 'zod'
import type { CredproxyPaths } from '../paths.js'
import type { AuditEntry, PeerInfo } from '../broker/hooks.js'

const AUDIT_FILE_NAME = 'audit.log'

export function auditLogPath(paths: CredproxyPaths): string {
  return join(paths.stateDir, AUDIT_FILE_NAME)
}

const SESSION_PATTERN = /^[A-Za-z0-9_-]{1,128}$/
const OP_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/
const REASON_PATTERN = /^[A-Za-z0-9:._-]{1,64}$/
const ISO_TIME_PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$/
const EVENTS: ReadonlySet<string> = new Set<AuditEntry['event']>([
  'request',
  'connection_refused',
  'connection_evicted',
  'handshake_failed',
  'handshake_ok',
  'grant_changed',
  'egress',
  'source_run',
])
/** Written in place of a peer-supplied value that breaks its name rule (too long, odd characters). */
export const AUDIT_INVALID_VALUE = '<invalid>'

function checked(value: unknown, pattern: RegExp): string | undefined {
  if (value === undefined) return undefined
  return typeof value === 'string' && pattern.test(value) ? value : AUDIT_INVALID_VALUE
}

function checkedInt(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) ? value : undefined
}

function formatPeer(peer: PeerInfo | null | undefined): Record<string, number> | null | undefined {
  if (peer === undefined || peer === null) return peer
  const out: Record<string, number> = {}
  for (const field of ['pid', 'uid', 'gid', 'sandboxPid'] as const) {
    const value = checkedInt((peer as PeerInfo & { sandboxPid?: unknown })[field])
    if (value !== undefined) out[field] = value
  }
  return out
}

/**
 * The JSON line for one entry, built field by field from AuditEntry's own fields:
 * anything else on the object is ignored, and a value breaking its rule is replaced.
 */
export function formatAuditLine(entry: AuditEntry, now: Date = new Date()): string {
  const line: Record<string, unknown> = {
    time: typeof entry.time === 'string' && ISO_TIME_PATTERN.test(entry.time) ? entry.time : now.toISOString(),
    session: checked(entry.session, SESSION_PATTERN),
    event: EVENTS.has(entry.event) ? entry.event : AUDIT_INVALID_VALUE,
    peer: formatPeer(entry.peer),
    op: checked(entry.op, OP_PATTERN),
    provider: checked(entry.provider, PROVIDER_NAME_PATTERN),
    bucket: checked(entry.bucket, PROVIDER_NAME_PATTERN),
    key: checked(entry.key, KEY_NAME_PATTERN),
    outcome: entry.outcome === 'ok' || isErrorCode(entry.outcome) ? entry.outcome : AUDIT_INVALID_VALUE,
    durationMs:
      typeof entry.durationMs === 'number' && Number.isFinite(entry.durationMs) && entry.durationMs >= 0
        ? Math.round(entry.durationMs * 1000) / 1000
        : undefined,
    reason: checked(entry.reason, REASON_PATTERN),
    protocolVersion: checkedInt(entry.protocolVersion),
    count: checkedInt(entry.count),
    egress: formatEgress(entry.egress),
    source:
      entry.source === undefined
        ? undefined
        : { program: checked(entry.source.program, SOURCE_PROGRAM_PATTERN), exitCode: entry.source.exitCode === null ? null : checkedInt(entry.source.exitCode) },
  }
  return JSON.stringify(line)
}

const SOURCE_PROGRAM_PATTERN = /^[A-Za-z0-9._+-]{1,128}$/
const EGRESS_METHOD_PATTERN = /^[A-Z]{1,16}$/
const EGRESS_HOST_PATTERN = /^[A-Za-z0-9.:*_-]{0,253}$/
/** A path is printable ASCII without quotes or backslashes (the proxy strips the query before). */
const EGRESS_PATH_PATTERN = /^[\x21\x23-\x5b\x5d-\x7e]{0,256}$/

function formatEgress(egress: AuditEntry['egress']): Record<string, unknown> | undefined {
  if (egress === undefined) return undefined
  return {
    rule: checked(egress.rule, REASON_PATTERN),
    method: checked(egress.method, EGRESS_METHOD_PATTERN),
    host: checked(egress.host, EGRESS_HOST_PATTERN),
    path: checked(egress.path, EGRESS_PATH_PATTERN),
    status: checkedInt(egress.status),
    bytesIn: checkedInt(egress.bytesIn),
    bytesOut: checkedInt(egress.bytesOut),
    injected: egress.injected === true,
  }
}

const PeerSchema = z.looseObject({
  pid: z.number(),
  uid: z.number(),
  gid: z.number(),
  sandboxPid: z.number().optional(),
})

/** A line as read back: the writer's fields, read leniently so older or newer lines still show. */
export const AuditLineSchema = z.looseObject({
  time: z.string(),
  session: z.string().optional(),
  event: z.string(),
  peer: PeerSchema.nullable().optional(),
  op: z.string().optional(),
  provider: z.string().optional(),
  bucket: z.string().optional(),
  key: z.string().optional(),
  outcome: z.string().optional(),
  durationMs: z.number().optional(),
  reason: z.string().optional(),
  protocolVersion: z.number().optional(),
  dropped: z.number().optional(),
  count: z.number().optional(),
})
export type AuditLine = z.infer<typeof AuditLineSchema>
