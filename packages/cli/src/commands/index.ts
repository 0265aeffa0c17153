// The command table: the one place a command's name and one-line summary live.
// Each command's code is in its own file and loaded on use, so `credproxy --help`
// and `credproxy key get` load neither the OAuth client nor the server.
import type { Command } from '../cli-io.js'

export interface CommandEntry {
  /** One line for `credproxy --help`. */
  summary: string
  /** Refused inside a sandbox: it needs host files the sandbox cannot see, or changes grants. */
  hostOnly?: true
  load(): Promise<Command>
}

export const COMMANDS: Record<string, CommandEntry> = {
  run: { hostOnly: true, summary: 'Run a command in a sandbox with brokered credentials', load: () => import('./run.js').then((m) => m.command) },
  exec: { summary: 'Run a command with API keys in its environment', load: () => import('./exec.js').then((m) => m.command) },
  serve: { hostOnly: true, summary: 'Run a broker on a Unix socket for an external sandbox launcher', load: () => import('./serve.js').then((m) => m.command) },
  token: { summary: 'Print an access token for scripts', load: () => import('./token.js').then((m) => m.command) },
  demo: { summary: 'Show, in a real sandbox, that no secret but the granted one gets in', load: () => import('./demo.js').then((m) => m.command) },
  sessions: { hostOnly: true, summary: 'List running sessions with their grants and peers', load: () => import('./sessions.js').then((m) => m.command) },
  grant: { hostOnly: true, summary: 'Add a provider, key or capability to a running session', load: () => import('./grant.js').then((m) => m.command) },
  revoke: { hostOnly: true, summary: 'Take a provider, key or capability away from a running session', load: () => import('./revoke.js').then((m) => m.command) },
  egress: { hostOnly: true, summary: 'List egress rules and their credentials; test one through the proxy', load: () => import('./egress.js').then((m) => m.command) },
  audit: { hostOnly: true, summary: 'Show the audit log of credential operations', load: () => import('./audit.js').then((m) => m.command) },
  key: { summary: 'Store, read, list and delete API keys', load: () => import('./key.js').then((m) => m.command) },
  auth: { summary: 'Log in, import, inspect and remove OAuth tokens', load: () => import('./auth.js').then((m) => m.command) },
  doctor: { hostOnly: true, summary: 'Check storage, keyring, sandbox and config; print each problem with its fix', load: () => import('./doctor.js').then((m) => m.command) },
  completion: { summary: 'Print a shell completion script (bash, zsh or fish)', load: () => import('./completion.js').then((m) => m.command) },
}

/** The entry for name, or undefined (never an inherited property such as `toString`). */
export function findCommand(name: string): CommandEntry | undefined {
  return Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined
}
