// `credproxy audit`: show the audit log (all rotated files, oldest first), optionally
// following it and filtered by session. Values are printed as the writer checked them.
import { writeLine, type Command } from '../cli-io.js'
import { EXIT } from '../exit-codes.js'
import { resolvePaths } from '../paths.js'
import { auditLogPath, type AuditLine } from '../audit/audit-format.js'
import { readAuditEntries } from '../audit/audit-reader.js'
import { isSessionId } from '../control/session-registry.js'
import { parseOptions } from './parse-options.js'
import { UsageError } from '../errors.js'

const help = `Usage: credproxy audit [--follow] [--json] [--session ID]

Show the audit log: one line per credential operation, refused connection,
failed handshake and grant change, with time, session, peer, operation, target
and outcome. Never a secret value. Past a session's per-minute budget, events
of one kind are counted: a line ending in xN stands for N of them.

Options:
  --follow        keep printing new lines as they are written (Ctrl-C to stop)
  --json          print the stored JSON lines unchanged
  --session ID    only lines of this session (see \`credproxy sessions\`)

Examples:
  credproxy audit
  credproxy audit --follow --session 3f9a0c1d2e4b5a69
  credproxy audit --json | jq 'select(.outcome != "ok")'`

function target(line: AuditLine): string {
  const egress = (line as { egress?: Record<string, unknown> }).egress
  if (line.event === 'egress' && egress !== undefined) {
    // One egress request: `GET api.github.com/user 200 rule github injected`.
    const rule = typeof egress.rule === 'string' ? ` rule ${egress.rule}` : ''
    return `${String(egress.method)} ${String(egress.host)}${String(egress.path ?? '')} ${String(egress.status)}${rule}${egress.injected === true ? ' injected' : ''}`
  }
  const name = line.provider !== undefined ? (line.bucket === undefined ? line.provider : `${line.provider}:${line.bucket}`) : line.key !== undefined ? `key ${line.key}` : undefined
  const source = (line as { source?: Record<string, unknown> }).source
  if (line.event === 'source_run' && source !== undefined) {
    // One credential source command run: `key GH_TOKEN via gh exit 0`.
    return `${name ?? '-'} via ${String(source.program)} exit ${source.exitCode === null ? 'none' : String(source.exitCode)}`
  }
  if (name !== undefined) return name
  if (line.reason?.startsWith('capability:') === true) return line.reason
  return '-'
}

/** One peer as `pid P uid U[ sandbox S]` (S: the sandbox it was attributed to); `-` when unknown. */
export function formatPeer(peer: { pid?: unknown; uid?: unknown; sandboxPid?: unknown } | null | undefined): string {
  if (peer === null || peer === undefined || typeof peer.pid !== 'number') return '-'
  const sandbox = typeof peer.sandboxPid === 'number' ? ` sandbox ${peer.sandboxPid}` : ''
  return `pid ${peer.pid} uid ${String(peer.uid)}${sandbox}`
}

export function formatAuditLine(line: AuditLine): string {
  const time = line.time.replace('T', ' ').replace(/\.\d+Z$/, 'Z')
  const peer = formatPeer(line.peer)
  // Requests show their op; other events their name, plus the op when one applies (handshake_failed:get_token).
  const what = line.event === 'request' ? (line.op ?? '-') : line.op === undefined ? line.event : `${line.event}:${line.op}`
  const outcome = line.outcome ?? (line.dropped !== undefined ? `dropped ${line.dropped}` : '-')
  const reason = line.reason !== undefined && !line.reason.startsWith('capability:') ? ` (${line.reason})` : ''
  // A summary line of the session's audit budget stands for `count` events like it.
  const count = line.count === undefined ? '' : ` x${line.count}`
  return [time, line.session ?? '-', peer, what, target(line), `${outcome}${reason}${count}`].join('  ')
}

export const command: Command = {
  name: 'audit',
  help,
  async run(args, io) {
    const values = parseOptions('audit', args, { follow: { type: 'boolean' }, json: { type: 'boolean' }, session: { type: 'string' } })
    if (values.session !== undefined && !isSessionId(values.session)) {
      throw new UsageError('--session takes a session id', 'Run `credproxy sessions` to list session ids.')
    }
    // Stop following when whoever reads our output goes away (pipe closed).
    const stop = new AbortController()
    io.stdout.once('close', () => stop.abort())
    io.stdout.once('error', () => stop.abort())
    let shown = 0
    for await (const line of readAuditEntries(auditLogPath(resolvePaths(io.env)), {
      follow: values.follow === true,
      signal: stop.signal,
    })) {
      if (values.session !== undefined && line.session !== values.session) continue
      writeLine(io.stdout, values.json === true ? JSON.stringify(line) : formatAuditLine(line))
      shown++
    }
    if (shown === 0 && values.json !== true && values.follow !== true) {
      writeLine(io.stderr, 'credproxy: no audit entries yet')
      writeLine(io.stderr, '  Entries appear once a session (`credproxy run` or `credproxy serve`) handles a request.')
    }
    return EXIT.OK
  },
}
