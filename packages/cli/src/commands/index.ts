// The command table. Each command lives in its own file and is loaded on use,
// so `credproxy key get` does not load the OAuth client or the server.
import type { Command } from '../cli-io.js'

export const COMMANDS: Record<string, () => Promise<Command>> = {
}
