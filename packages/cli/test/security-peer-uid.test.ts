// Must show: a client running as another uid is refused by the peer check even when
// the socket permissions would let it connect (setpriv, as root).
import { spawn } from 'node:child_process'
import { chmod } from 'node:fs/promises'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { decodeFrameBody, encodeFrame, generateNonce } from '@credproxy/core'
import { afterEach, describe, expect, test } from 'vitest'
import { startSecureSession, type SecureSession } from './helpers/security-helpers.js'

const PEER_CLIENT = fileURLToPath(new URL('./fixtures/peer-client.mjs', import.meta.url))
const NOBODY = 65534

let session: SecureSession | undefined
afterEach(async () => {
  await session?.cleanup()
  session = undefined
})

/** Run the plain peer as uid/gid 65534; returns the frames it received. */
async function runAsNobody(socketPath: string): Promise<{ output: string; frames: Record<string, unknown>[] }> {
  const hello = encodeFrame({ v: 3, op: 'handshake', payload: { minVersion: 1, maxVersion: 3, clientNonce: generateNonce() } })
  const child = spawn('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, PEER_CLIENT, socketPath, hello.toString('hex')])
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
  await new Promise((resolve) => child.on('exit', resolve))
  const bytes = Buffer.from(
    output
      .split('\n')
      .filter((line) => line.startsWith('data '))
      .map((line) => line.slice(5))
      .join(''),
    'hex',
  )
  const frames: Record<string, unknown>[] = []
  for (let at = 0; at + 4 <= bytes.length; ) {
    const length = bytes.readUInt32BE(at)
    frames.push(decodeFrameBody(bytes.subarray(at + 4, at + 4 + length)))
    at += 4 + length
  }
  return { output, frames }
}

/** Open the path to the socket for everyone, as a careless setup would. */
async function openUp(session: SecureSession): Promise<void> {
  for (let dir = dirname(session.socketPath); dir.startsWith(session.home); dir = dirname(dir)) await chmod(dir, 0o755)
  await chmod(session.socketPath, 0o777)
}

describe.runIf(process.platform === 'linux' && process.getuid?.() === 0)('peer check on the real broker', () => {
  test('a client of another uid gets FORBIDDEN before any handshake byte is read, and it is audited', async () => {
    session = await startSecureSession({ grants: { providers: [{ provider: '*' }], keys: ['*'], capabilities: ['read'] } })
    await openUp(session)
    const { output, frames } = await runAsNobody(session.socketPath)
    expect(output).toContain('connected')
    expect(frames).toEqual([expect.objectContaining({ op: 'handshake', ok: false, code: 'FORBIDDEN' })])
    expect(JSON.stringify(frames)).not.toContain('serverNonce')
    expect(await session.auditLines()).toContainEqual(
      expect.objectContaining({
        event: 'connection_refused',
        outcome: 'FORBIDDEN',
        reason: 'uid-mismatch',
        peer: expect.objectContaining({ uid: NOBODY, gid: NOBODY }) as unknown,
      }),
    )
    expect(session.server.peers()).toEqual([])
  })

  test('the same client is let through to the handshake once its uid is allowlisted', async () => {
    session = await startSecureSession({ allowedUids: [NOBODY], limits: { handshakeTimeoutMs: 200 } })
    await openUp(session)
    const { frames } = await runAsNobody(session.socketPath)
    expect(frames[0]).toMatchObject({ op: 'handshake', ok: true, data: { version: 3 } })
  })
})
