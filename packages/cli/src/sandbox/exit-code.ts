// The exit code a wrapper reports for its child, shared by `run` (launch.ts) and `exec`;
// its own file so `exec` inside a sandbox does not load the launcher.
import { constants } from 'node:os'

/** The command's exit code, or 128 + signal number when it was killed. */
export function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code
  const number = signal === null ? undefined : constants.signals[signal]
  return 128 + (number ?? 1)
}
