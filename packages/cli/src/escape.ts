// The one escape for untrusted text (from a sandbox or an authorization server) on its
// way to a log line or a terminal: control characters become visible \x.. / \u.... escapes,
// so such text can neither start a forged line nor drive the terminal (ANSI sequences).
import type { Writable } from 'node:stream'

/**
 * C0 controls, DEL, C1 controls, the Unicode line and paragraph separators, and the
 * bidirectional overrides and isolates (which can make a line read as something else).
 */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g

export function escapeUntrusted(text: string, maxLength?: number): string {
  const clipped = maxLength !== undefined && text.length > maxLength ? `${text.slice(0, maxLength)}...` : text
  return clipped.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0)
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`
  })
}

/** A log sink writing one escaped line per call: whatever a line holds, it stays one line. */
export function logLineTo(stream: Writable): (line: string) => void {
  return (line) => {
    stream.write(`${escapeUntrusted(line)}\n`)
  }
}
