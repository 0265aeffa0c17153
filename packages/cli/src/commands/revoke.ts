// `credproxy revoke --session ID ...`: take grants away from a running session,
// effective on its next request. Same flags as grant.
import type { Command } from '../cli-io.js'
import { changeGrants } from './grant.js'

const help = `Usage: credproxy revoke --session ID [--provider P[:BUCKET]]... [--key NAME]... [--capability C]...

Take grants away from a running session. Its next request is refused with
NOT_GRANTED; connections stay open. A provider granted with all its buckets is
revoked as a whole (revoke it, then grant the buckets to keep).

Options:
  --session ID         the session to change (see \`credproxy sessions\`)
  --provider P[:B]     revoke provider P, or only bucket B of it (repeatable)
  --key NAME           revoke the API key NAME (repeatable)
  --capability C       revoke read, login or save (repeatable)
  --json               print the session's grants after the change as JSON

Examples:
  credproxy revoke --session 3f9a0c1d2e4b5a69 --provider anthropic
  credproxy revoke --session 3f9a0c1d2e4b5a69 --key OPENAI_API_KEY --capability save`

export const command: Command = {
  name: 'revoke',
  summary: 'Take a provider, key or capability away from a running session',
  help,
  run: (args, io) => changeGrants('revoke', args, io),
}
