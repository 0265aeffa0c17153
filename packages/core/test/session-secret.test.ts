// readSessionSecret in real child processes (the secret is cached per process, and
// the fd is a real inherited descriptor). Needs the built package: run `npm run build` first.
import { createHash } from 'node:crypto'
import { spawn } from 'node:child_process'
import { closeSync, existsSync, openSync } from 'node:fs'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { CORE_DIST, CORE_DIST_PATH, runChild } from './helpers/child.js'

const SECRET_HEX = '5ec2e7'.repeat(10) + 'abcd'
const SECRET_SHA = createHash('sha256').update(Buffer.from(SECRET_HEX, 'hex')).digest('hex')

// Reports what the child saw, never the secret itself.
const READ_SECRET = `
import { createHash } from 'node:crypto'
import { fstatSync } from 'node:fs'
const { readSessionSecret } = await import(CORE)
const fdBefore = process.env.CREDPROXY_SECRET_FD
try {
  const secret = readSessionSecret(process.env)
  let fdOpen = true
  try { fstatSync(Number(fdBefore)) } catch { fdOpen = false }
  const again = readSessionSecret(process.env)
  console.log(JSON.stringify({ sha256: createHash('sha256').update(secret).digest('hex'),
    envHasFd: 'CREDPROXY_SECRET_FD' in process.env, fdOpen, cached: again.equals(secret) }))
} catch (error) {
  console.log(JSON.stringify({ code: error.code, message: error.message, envHasFd: 'CREDPROXY_SECRET_FD' in process.env }))
}
`

function baseEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return { PATH: process.env['PATH'], ...extra }
}

async function read(options: Parameters<typeof runChild>[1]): Promise<Record<string, unknown>> {
  const result = await runChild(READ_SECRET, options)
  expect(result.stderr).toBe('')
  return JSON.parse(result.stdout) as Record<string, unknown>
}

let dir: string
beforeAll(async () => {
  if (!existsSync(CORE_DIST_PATH)) throw new Error('run `npm run build` first: the child imports packages/core/dist')
  dir = await mkdtemp(join(tmpdir(), 'credproxy-secret-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('CREDPROXY_SECRET_FD', () => {
  test('reads the secret from an inherited file once, closes the fd and removes the variable', async () => {
    const seen = await read({ env: baseEnv({ CREDPROXY_SECRET_FD: '3' }), fd3: `${SECRET_HEX}\n` })
    expect(seen).toEqual({ sha256: SECRET_SHA, envHasFd: false, fdOpen: false, cached: true })
  })

  test('without a trailing newline (read to EOF)', async () => {
    const seen = await read({ env: baseEnv({ CREDPROXY_SECRET_FD: '3' }), fd3: SECRET_HEX })
    expect(seen['sha256']).toBe(SECRET_SHA)
  })

  test('a malformed secret is a clear UNAUTHORIZED error that does not echo the input', async () => {
    const seen = await read({ env: baseEnv({ CREDPROXY_SECRET_FD: '3' }), fd3: 'NOT-A-SECRET-value\n' })
    expect(seen['code']).toBe('UNAUTHORIZED')
    expect(seen['message']).toContain('64 lowercase hex')
    expect(seen['message']).toContain('credproxy run')
    expect(seen['message']).not.toContain('NOT-A-SECRET')
    expect(seen['envHasFd']).toBe(false)
  })

  test('an unlinked file on the fd serves every process that inherits it (a shell running two clients)', async () => {
    // `credproxy run` hands over an unlinked file, not a pipe: positional reads leave
    // the shared file position alone, so the second process reads the secret too.
    const file = join(dir, 'shared-secret')
    await writeFile(file, `${SECRET_HEX}\n`, { mode: 0o600 })
    const fd = openSync(file, 'r')
    await rm(file)
    const script = `const CORE = ${JSON.stringify(CORE_DIST)};\n${READ_SECRET}`
    const child = spawn('sh', ['-c', 'node --input-type=module -e "$SCRIPT"; node --input-type=module -e "$SCRIPT"'], {
      env: baseEnv({ CREDPROXY_SECRET_FD: '3', SCRIPT: script }),
      stdio: ['ignore', 'pipe', 'pipe', fd],
    })
    closeSync(fd)
    let stdout = ''
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')))
    await new Promise((resolve) => child.on('close', resolve))
    const seen = stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
    expect(seen).toHaveLength(2)
    for (const one of seen) expect(one['sha256']).toBe(SECRET_SHA)
  })

  test('a pipe on fd 3 (a parent that did not pass the secret on) is neither read nor closed, and the error names CREDPROXY_SECRET_FILE', async () => {
    // Node's own libuv pipe sits on fd 3 in a child Node spawned; closing it aborted Node (rc 134).
    const script = `${READ_SECRET}
const { fstatSync: stat } = await import('node:fs')
const { readFileSync } = await import('node:fs')
let open = true
try { stat(3) } catch { open = false }
console.log(JSON.stringify({ stillOpen: open, unread: readFileSync(3, 'utf8') }))`
    const result = await runChild(script, { env: baseEnv({ CREDPROXY_SECRET_FD: '3' }), fd3Pipe: 'not-ours\n' })
    const [first, second] = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
    expect(first?.['code']).toBe('UNAUTHORIZED')
    expect(first?.['message']).toContain('CREDPROXY_SECRET_FILE')
    expect(first?.['envHasFd']).toBe(false)
    expect(second).toEqual({ stillOpen: true, unread: 'not-ours\n' })
  })

  test('a Node child of a process holding the secret on fd 3 (spawn without fd 3) fails clearly, no abort', async () => {
    // The parent reads nothing; its child inherits CREDPROXY_SECRET_FD=3 but fd 3 is libuv's own.
    const child = `const CORE = ${JSON.stringify(CORE_DIST)};\n${READ_SECRET}`
    const script = `
const { spawnSync } = await import('node:child_process')
const r = spawnSync(process.execPath, ['--input-type=module', '-e', ${JSON.stringify(child)}], { encoding: 'utf8' })
console.log(JSON.stringify({ status: r.status, signal: r.signal, out: JSON.parse(r.stdout) }))`
    const result = await runChild(script, { env: baseEnv({ CREDPROXY_SECRET_FD: '3' }), fd3: `${SECRET_HEX}\n` })
    expect(result.stderr).toBe('')
    const seen = JSON.parse(result.stdout) as { status: number; signal: string | null; out: Record<string, unknown> }
    expect(seen.status).toBe(0)
    expect(seen.signal).toBeNull()
    expect(seen.out['code']).toBe('UNAUTHORIZED')
  })

  test('a file of the wrong size on the fd is not read', async () => {
    const seen = await read({ env: baseEnv({ CREDPROXY_SECRET_FD: '3' }), fd3: `${SECRET_HEX}\n${'x'.repeat(100)}` })
    expect(seen['code']).toBe('UNAUTHORIZED')
    expect(seen['message']).toContain('not a session secret')
  })

  test('stdio fds are refused', async () => {
    const seen = await read({ env: baseEnv({ CREDPROXY_SECRET_FD: '0' }) })
    expect(seen['code']).toBe('UNAUTHORIZED')
    expect(seen['message']).toContain('CREDPROXY_SECRET_FD')
  })
})

describe('CREDPROXY_SECRET_FILE', () => {
  test('reads a 0600 file', async () => {
    const file = join(dir, 'secret')
    await writeFile(file, `${SECRET_HEX}\n`, { mode: 0o600 })
    const seen = await read({ env: baseEnv({ CREDPROXY_SECRET_FILE: file }) })
    expect(seen['sha256']).toBe(SECRET_SHA)
  })

  test('a 0400 file wins over CREDPROXY_SECRET_FD, whose fd is left alone', async () => {
    const file = join(dir, 'secret-ro')
    await writeFile(file, `${SECRET_HEX}\n`, { mode: 0o400 })
    const script = `${READ_SECRET}
const { fstatSync: stat } = await import('node:fs')
let open = true
try { stat(3) } catch { open = false }
console.log(JSON.stringify({ stillOpen: open }))`
    const result = await runChild(script, { env: baseEnv({ CREDPROXY_SECRET_FILE: file, CREDPROXY_SECRET_FD: '3' }), fd3Pipe: 'x' })
    const [first, second] = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
    expect(first?.['sha256']).toBe(SECRET_SHA)
    expect(first?.['envHasFd']).toBe(false)
    expect(second).toEqual({ stillOpen: true })
  })

  test('refuses a file others can read', async () => {
    const file = join(dir, 'secret-open')
    await writeFile(file, SECRET_HEX)
    await chmod(file, 0o644)
    const seen = await read({ env: baseEnv({ CREDPROXY_SECRET_FILE: file }) })
    expect(seen['code']).toBe('UNAUTHORIZED')
    expect(seen['message']).toContain('0600')
  })
})

test('no secret at all names both variables', async () => {
  const seen = await read({ env: baseEnv({}) })
  expect(seen['code']).toBe('UNAUTHORIZED')
  expect(seen['message']).toContain('CREDPROXY_SECRET_FD')
  expect(seen['message']).toContain('CREDPROXY_SECRET_FILE')
})
