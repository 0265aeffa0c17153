// Runs a small ES module in a child `node` against the BUILT core package
// (packages/core/dist: run `npm run build` first). The script text lives in the
// test, so no fixture file needs its own lint setup.
import { spawn } from 'node:child_process'
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
  /** Written to the child's fd 3 (a pipe), then closed; the child sees CREDPROXY_SECRET_FD=3 only if env says so. */
  fd3?: string
}

/** `script` may use CORE (the URL of the built package) via `await import(CORE)`. */
export function runChild(script: string, options: ChildOptions): Promise<ChildResult> {
  const source = `const CORE = ${JSON.stringify(CORE_DIST)};\n${script}`
  const child = spawn(process.execPath, ['--input-type=module', '-e', source], {
    env: options.env,
    stdio: ['ignore', 'pipe', 'pipe', options.fd3 === undefined ? 'ignore' : 'pipe'],
  })
  const fd3 = child.stdio[3]
  if (options.fd3 !== undefined && fd3 && 'end' in fd3) fd3.end(options.fd3)
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')))
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')))
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}
