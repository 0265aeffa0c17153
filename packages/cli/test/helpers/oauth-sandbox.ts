// Run the built oauth-child.mjs fixture as a sandboxed client of a real
// CredentialProxyServer, through a relay that records every byte the child receives.
import { spawn } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs'
import { createConnection, createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const FIXTURE = fileURLToPath(new URL('../fixtures/oauth-child.mjs', import.meta.url))

export interface Relay {
  socketPath: string
  /** Everything the server sent towards the children, as one UTF-8 string. */
  received(): string
  close(): Promise<void>
}

export async function startRecordingRelay(target: string, dir: string): Promise<Relay> {
  const chunks: Buffer[] = []
  const socketPath = join(dir, 'relay.sock')
  const server: Server = createServer((inbound) => {
    const outbound = createConnection(target)
    inbound.pipe(outbound)
    outbound.on('data', (chunk: Buffer) => chunks.push(chunk))
    outbound.pipe(inbound)
    inbound.on('error', () => outbound.destroy())
    outbound.on('error', () => inbound.destroy())
    inbound.on('close', () => outbound.destroy())
  })
  await new Promise<void>((resolve) => server.listen(socketPath, resolve))
  return {
    socketPath,
    received: () => Buffer.concat(chunks).toString('utf8'),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

export interface ChildRun {
  /** Parsed JSON lines as they arrive. */
  lines: Record<string, unknown>[]
  exited: Promise<number>
}

export function runChild(socketPath: string, secret: Buffer, args: string[]): ChildRun {
  const env: NodeJS.ProcessEnv = { PATH: process.env['PATH'], CREDPROXY_SOCKET: socketPath, CREDPROXY_SECRET_FD: '3' }
  // fd 3 is an unlinked 0600 file, as `credproxy run --sandbox none` hands it over (a client reads no pipe).
  const dir = mkdtempSync(join(tmpdir(), 'credproxy-fd-'))
  writeFileSync(join(dir, 'secret'), `${secret.toString('hex')}\n`, { mode: 0o600 })
  const fd = openSync(join(dir, 'secret'), 'r')
  rmSync(dir, { recursive: true, force: true })
  const child = spawn(process.execPath, [FIXTURE, ...args], { stdio: ['ignore', 'pipe', 'inherit', fd], env })
  closeSync(fd)
  const lines: Record<string, unknown>[] = []
  let buffered = ''
  const stdout = child.stdout
  if (stdout === null) throw new Error('child has no stdout')
  stdout.setEncoding('utf8')
  stdout.on('data', (text: string) => {
    buffered += text
    let nl: number
    while ((nl = buffered.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(buffered.slice(0, nl)) as Record<string, unknown>)
      buffered = buffered.slice(nl + 1)
    }
  })
  const exited = new Promise<number>((resolve) => child.once('exit', (code) => resolve(code ?? 1)))
  return { lines, exited }
}

export async function waitForLine(run: ChildRun, key: string): Promise<Record<string, unknown>> {
  for (let i = 0; i < 400; i += 1) {
    const line = run.lines.find((l) => key in l)
    if (line !== undefined) return line
    const error = run.lines.find((l) => 'error' in l)
    if (error !== undefined) throw new Error(`child failed: ${JSON.stringify(error)}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  throw new Error(`child printed no ${key}`)
}
