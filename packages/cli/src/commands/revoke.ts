// `credproxy revoke --session ID ...`: take grants away from a running session,
// effective on its next request. Same flags as grant.
import type { Command } from '../cli-io.js'
import { changeGrants, grantUsage } from './grant.js'

const help = `${grantUsage(
  'revoke',
  `Take grants away from a running session. Its next request is refused with
NOT_GRANTED; connections stay open. A provider granted with all its buckets is
revoked as a whole (revoke it, then grant the buckets to keep).`,
)}

Examples:
  credproxy revoke --session 3f9a0c1d2e4b5a69 --provider anthropic
  credproxy revoke --session 3f9a0c1d2e4b5a69 --key OPENAI_API_KEY --capability save`

export const command: Command = {
  name: 'revoke',
  help,
  run: (args, io) => changeGrants('revoke', args, io),
}
