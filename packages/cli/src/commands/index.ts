// The command table. Each command lives in its own file and is loaded on use,
// so `credproxy key get` does not load the OAuth client or the server.
import type { Command } from '../cli-io.js'

export const COMMANDS: Record<string, () => Promise<Command>> = {
  run: () => import('./run.js').then((m) => m.command),
  exec: () => import('./exec.js').then((m) => m.command),
  serve: () => import('./serve.js').then((m) => m.command),
  token: () => import('./token.js').then((m) => m.command),
  demo: () => import('./demo.js').then((m) => m.command),
  sessions: () => import('./sessions.js').then((m) => m.command),
  grant: () => import('./grant.js').then((m) => m.command),
  revoke: () => import('./revoke.js').then((m) => m.command),
  audit: () => import('./audit.js').then((m) => m.command),
  key: () => import('./key.js').then((m) => m.command),
  auth: () => import('./auth.js').then((m) => m.command),
}
