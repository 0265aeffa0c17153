// `credproxy grant --session ID ...`: add grants to a running session from the host,
// effective on the session's next request (no reconnect). Talks to the control socket.
import { isKeyName } from '@credproxy/core'
import { writeLine, type CliIO, type Command } from '../cli-io.js'
import { EXIT } from '../exit-codes.js'
import { resolvePaths } from '../paths.js'
import { sendControlRequest } from '../control/control-client.js'
import { CAPABILITIES, GrantSetSchema, parseProviderGrant, type Capability, type GrantChange, type GrantSet, WILDCARD } from '../broker/grants.js'
import { findSession } from '../control/session-registry.js'
import { parseOptions } from './parse-options.js'
import { openCommandStores } from './stores.js'
import { CredproxyError, UsageError } from '../errors.js'

type GrantVerb = 'grant' | 'revoke'

/** Usage and options of grant and revoke: the same flags, worded for verb. */
export function grantUsage(verb: GrantVerb, description: string): string {
  return `Usage: credproxy ${verb} --session ID [--provider P[:BUCKET]]... [--key NAME]... [--capability C]... [--egress RULE]...

${description}

Options:
  --session ID         the session to change, or the start of its id when only one
                       running session's id starts so (see \`credproxy sessions\`)
  --provider P[:B]     ${verb} provider P, or only bucket B of it (repeatable)
  --key NAME           ${verb} the API key NAME (repeatable)
  --capability C       ${verb} read, login or save (repeatable)
  --egress RULE        ${verb} egress proxy rule RULE (a session started with --egress; repeatable)
  --json               print the session's grants after the change as JSON`
}

const help = `${grantUsage(
  'grant',
  `Give a running session more: a provider (all its buckets, or one with P:BUCKET),
an API key name, or a capability (read, login, save). The sandbox sees the change
on its next request; it does not reconnect.`,
)}

Examples:
  credproxy grant --session 3f9a0c1d2e4b5a69 --provider anthropic
  credproxy grant --session 3f9a0c1d2e4b5a69 --provider gemini:work --key OPENAI_API_KEY
  credproxy grant --session 3f9a0c1d2e4b5a69 --capability login`

export interface GrantArgs {
  session: string
  change: GrantChange
  json: boolean
}

/** Shared by grant and revoke: the same flags, the same checks. */
export function parseGrantArgs(verb: GrantVerb, args: string[]): GrantArgs {
  const values = parseOptions(verb, args, {
    session: { type: 'string' },
    provider: { type: 'string', multiple: true },
    key: { type: 'string', multiple: true },
    capability: { type: 'string', multiple: true },
    egress: { type: 'string', multiple: true },
    json: { type: 'boolean' },
  })
  const examples = `Run \`credproxy ${verb} --help\` for examples.`
  if (values.session === undefined) {
    throw new UsageError('--session ID is required', 'Run `credproxy sessions` to list session ids.')
  }
  const change: GrantChange = {}
  if (values.provider !== undefined) {
    change.providers = values.provider.map((text) => {
      try {
        return parseProviderGrant(text)
      } catch {
        throw new UsageError(
          `--provider ${JSON.stringify(text.slice(0, 80))} is not PROVIDER or PROVIDER:BUCKET (letters, digits, . _ @ -)`,
          examples,
        )
      }
    })
  }
  if (values.key !== undefined) {
    for (const key of values.key) {
      if (!isKeyName(key) && key !== WILDCARD) {
        throw new UsageError(`--key ${JSON.stringify(key.slice(0, 80))} is not a key name (letters, digits, . _ -)`, examples)
      }
    }
    change.keys = values.key
  }
  if (values.capability !== undefined) {
    for (const capability of values.capability) {
      if (!(CAPABILITIES as readonly string[]).includes(capability)) {
        throw new UsageError(`--capability must be one of ${CAPABILITIES.join(', ')}`, examples)
      }
    }
    change.capabilities = values.capability as Capability[]
  }
  if (values.egress !== undefined) {
    for (const rule of values.egress) {
      if (!/^[a-zA-Z0-9._-]{1,64}$/.test(rule)) throw new UsageError(`--egress ${JSON.stringify(rule.slice(0, 80))} is not a rule name (letters, digits, . _ -)`, examples)
    }
    change.egress = values.egress
  }
  if (change.providers === undefined && change.keys === undefined && change.capabilities === undefined && change.egress === undefined) {
    throw new UsageError(`nothing to ${verb}: pass --provider, --key, --capability or --egress`, examples)
  }
  return { session: values.session, change, json: values.json === true }
}

export function formatGrants(grants: GrantSet): string {
  const providers = grants.providers.map((p) =>
    p.buckets === undefined ? `${p.provider} (all buckets)` : p.buckets.map((b) => `${p.provider}:${b}`).join(', '),
  )
  return [
    `providers:    ${providers.length > 0 ? providers.join(', ') : 'none'}`,
    `keys:         ${grants.keys.length > 0 ? grants.keys.join(', ') : 'none'}`,
    `capabilities: ${grants.capabilities.length > 0 ? grants.capabilities.join(', ') : 'none'}`,
    ...(grants.egress === undefined ? [] : [`egress:       ${grants.egress.join(', ')}`]),
  ].join('\n')
}

/** Run grant or revoke against the session's control socket and print the grants that result. */
export async function changeGrants(verb: GrantVerb, args: string[], io: CliIO): Promise<number> {
  const parsed = parseGrantArgs(verb, args)
  const session = await findSession(resolvePaths(io.env), parsed.session)
  const data = await sendControlRequest(session.controlSocketPath, verb, parsed.change)
  const grants = GrantSetSchema.safeParse((data as { grants?: unknown } | null)?.grants)
  if (!grants.success) throw new CredproxyError('FAILED', 'the session answered without its grants', { hint: 'Run `credproxy sessions` to check it.' })
  if (parsed.json) {
    writeLine(io.stdout, JSON.stringify({ session: session.id, grants: grants.data }, null, 2))
  } else {
    writeLine(io.stdout, `${verb === 'grant' ? 'Granted' : 'Revoked'}; session ${session.id} now has:`)
    writeLine(io.stdout, formatGrants(grants.data as GrantSet).replace(/^/gm, '  '))
  }
  if (verb === 'grant') await noteMissingKeys(parsed.change.keys ?? [], io)
  return EXIT.OK
}

/** A granted key that is not stored would only fail later, inside the sandbox: say so now. Best effort. */
async function noteMissingKeys(keys: string[], io: CliIO): Promise<void> {
  const named = keys.filter((key) => key !== WILDCARD)
  if (named.length === 0) return
  let stored: string[]
  try {
    stored = await (await openCommandStores(io)).keys.listKeys()
  } catch {
    return
  }
  for (const key of named.filter((k) => !stored.includes(k))) {
    writeLine(io.stderr, `credproxy: note: no API key named ${key} is stored on the host yet; the sandbox gets it once you run: credproxy key set ${key}`)
  }
}

export const command: Command = {
  name: 'grant',
  help,
  run: (args, io) => changeGrants('grant', args, io),
}
