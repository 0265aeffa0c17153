// `credproxy sessions`: the running broker sessions of this user, with their grants
// and connected peers, read from the session registry and each control socket.
import { writeLine, type Command } from '../cli-io.js'
import { EXIT } from '../exit-codes.js'
import { resolvePaths } from '../paths.js'
import { sendControlRequest } from '../control/control-client.js'
import { GrantSetSchema, type GrantSet } from '../broker/grants.js'
import type { SessionRecord } from '../control/session-registry.js'
import { pruneStaleSessions } from '../control/stale-sessions.js'
import { formatPeer } from './audit.js'
import { formatGrants } from './grant.js'
import { parseOptions } from './parse-options.js'

/** Per-session wait for an answer when listing: a hung session must not hang the list. */
export const SESSIONS_INFO_TIMEOUT_MS = 1_500

const help = `Usage: credproxy sessions [--json]

List the running credproxy sessions of this user: id, broker pid, start time,
the sandboxed command (argv[0] only), its grants and the connected peers.
Sessions whose process has exited are removed from the list.

Options:
  --json    one JSON array, for scripts

Examples:
  credproxy sessions
  credproxy sessions --json | jq '.[].id'
  credproxy grant --session ID --provider anthropic    # then change one`

interface SessionView extends SessionRecord {
  reachable: boolean
  grants?: GrantSet
  peers?: unknown
}

async function describe(record: SessionRecord): Promise<SessionView> {
  try {
    const data = (await sendControlRequest(record.controlSocketPath, 'info', undefined, {
      timeoutMs: SESSIONS_INFO_TIMEOUT_MS,
    })) as { grants?: unknown; peers?: unknown } | null
    const grants = GrantSetSchema.safeParse(data?.grants)
    return {
      ...record,
      reachable: true,
      ...(grants.success ? { grants: grants.data as GrantSet } : {}),
      peers: data?.peers ?? [],
    }
  } catch {
    return { ...record, reachable: false }
  }
}

function formatPeers(peers: unknown): string {
  if (!Array.isArray(peers) || peers.length === 0) return 'none connected'
  return peers
    .map((peer: unknown) => {
      const text = formatPeer(peer as Parameters<typeof formatPeer>[0])
      return text === '-' ? 'unknown peer' : text
    })
    .join(', ')
}

export const command: Command = {
  name: 'sessions',
  help,
  async run(args, io) {
    const json = parseOptions('sessions', args, { json: { type: 'boolean' } }).json === true
    const views = await Promise.all((await pruneStaleSessions(resolvePaths(io.env), undefined, io.env)).map(describe))
    if (json) {
      writeLine(io.stdout, JSON.stringify(views, null, 2))
      return EXIT.OK
    }
    if (views.length === 0) {
      writeLine(io.stdout, 'No running sessions.')
      writeLine(io.stdout, '  Start one with `credproxy run --grant PROVIDER -- COMMAND`.')
      return EXIT.OK
    }
    for (const view of views) {
      writeLine(io.stdout, `session ${view.id}`)
      writeLine(io.stdout, `  pid ${view.pid}, started ${view.started}, command ${view.command ?? '-'}`)
      writeLine(io.stdout, `  socket:       ${view.socketPath}`)
      if (!view.reachable) {
        writeLine(io.stdout, '  (not answering on its control socket)')
        continue
      }
      if (view.grants !== undefined) writeLine(io.stdout, formatGrants(view.grants).replace(/^/gm, '  '))
      writeLine(io.stdout, `  peers:        ${formatPeers(view.peers)}`)
    }
    return EXIT.OK
  },
}
