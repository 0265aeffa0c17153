// Runs a small ES module in a child `node` against the BUILT core package
// (packages/core/dist: run `npm run build` first). The script text lives in the
// test, so no fixture file needs its own lint setup.
import { spawn } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const CORE_DIST = new URL('../../dist/index.js', import.meta.url).href
export const CORE_DIST_PATH = fileURLToPath(CORE_DIST)

export interface ChildResult {
  code: number | null
  stdout: string
  stderr: string
}

export interface ChildOptions {
  env: NodeJS.ProcessEnv
  /** The child's fd 3: an unlinked 0600 file holding this text, as a launcher hands it over; the child sees CREDPROXY_SECRET_FD=3 only if env says so. */
  fd3?: string
  /** The child's fd 3 is a pipe with this text written to it (what a client must not trust). */
  fd3Pipe?: string
}

/** A read-only fd of an unlinked 0600 file holding `text`. */
export function unlinkedFileFd(text: string): number {
  const dir = mkdtempSync(join(tmpdir(), 'credproxy-fd-'))
  const file = join(dir, 'secret')
  writeFileSync(file, text, { mode: 0o600 })
  const fd = openSync(file, 'r')
  rmSync(dir, { recursive: true, force: true })
  return fd
}

/** `script` may use CORE (the URL of the built package) via `await import(CORE)`. */
export function runChild(script: string, options: ChildOptions): Promise<ChildResult> {
  const source = `const CORE = ${JSON.stringify(CORE_DIST)};\n${script}`
  const file = options.fd3 === undefined ? undefined : unlinkedFileFd(options.fd3)
  const child = spawn(process.execPath, ['--input-type=module', '-e', source], {
    env: options.env,
    stdio: ['ignore', 'pipe', 'pipe', file ?? (options.fd3Pipe === undefined ? 'ignore' : 'pipe')],
  })
  if (file !== undefined) closeSync(file)
  const fd3 = child.stdio[3]
  if (options.fd3Pipe !== undefined && fd3 && 'end' in fd3) {
    // The child may exit without reading it all: a reset is expected then.
    fd3.on('error', () => undefined)
    fd3.end(options.fd3Pipe)
  }
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')))
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')))
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}
