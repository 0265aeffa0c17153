// A test-only broker peer that speaks raw frames over a real Unix socket in a fresh
// mkdtemp directory. It is the protocol's other side, hand-written for client tests
// (the real CredentialProxyServer lives in @credproxy/cli and is tested there).
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { computeClientProof, computeServerProof, encodeFrame, FrameDecoder, generateNonce } from '../../src/index.js'

export type Frame = Record<string, unknown>

export interface PeerConnection {
  readonly index: number
  readonly socket: Socket
  /** Every frame received on this connection, in order. */
  readonly frames: Frame[]
  /** Raw bytes received. */
  readonly bytes: Buffer[]
  version: number
  send(message: Frame): void
  sendRaw(bytes: Buffer): void
  reply(request: Frame, data: unknown): void
  fail(request: Frame, code: string, error?: string, retryAfter?: number): void
}

export type HandshakeMode =
  /** Answer v3 with a valid proof (requires `secret`), legacy by checking `legacyToken`. */
  | 'normal'
  /** v3 answered with a proof made from a different secret: an impostor listener. */
  | 'impostor'
  /** Answer UNKNOWN_VERSION. */
  | 'unknown-version'
  /** Never answer. */
  | 'silent'

export interface TestPeerOptions {
  secret?: Buffer
  legacyToken?: string
  handshake?: HandshakeMode
  /** Highest version this peer speaks (default 3). */
  maxVersion?: number
  /** Called for every request after the handshake; default answers NOT_FOUND. */
  onRequest?: (request: Frame, connection: PeerConnection) => void
}

export class TestPeer {
  readonly connections: PeerConnection[] = []
  onRequest: (request: Frame, connection: PeerConnection) => void

  private constructor(
    readonly dir: string,
    readonly socketPath: string,
    private readonly server: Server,
    private readonly options: TestPeerOptions,
  ) {
    this.onRequest = options.onRequest ?? ((request, c) => c.fail(request, 'NOT_FOUND'))
  }

  static async start(options: TestPeerOptions = {}): Promise<TestPeer> {
    const dir = await mkdtemp(join(tmpdir(), 'credproxy-peer-'))
    const socketPath = join(dir, 'broker.sock')
    const server = createServer()
    const peer = new TestPeer(dir, socketPath, server, options)
    server.on('connection', (socket) => peer.accept(socket))
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(socketPath, resolve)
    })
    return peer
  }

  /** Every frame received on every connection. */
  get frames(): Frame[] {
    return this.connections.flatMap((c) => c.frames)
  }

  /** Request frames (after the handshake) on every connection. */
  get requests(): Frame[] {
    return this.frames.filter((f) => f['op'] !== 'handshake' && f['op'] !== 'handshake_finish')
  }

  async close(): Promise<void> {
    for (const c of this.connections) c.socket.destroy()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
    await rm(this.dir, { recursive: true, force: true })
  }

  private accept(socket: Socket): void {
    const decoder = new FrameDecoder()
    let stage: 'hello' | 'finish' | 'ready' = 'hello'
    let serverNonce = ''
    let clientNonce = ''
    const connection: PeerConnection = {
      index: this.connections.length,
      socket,
      frames: [],
      bytes: [],
      version: 0,
      send: (message) => {
        if (!socket.destroyed) socket.write(encodeFrame(message))
      },
      sendRaw: (bytes) => {
        if (!socket.destroyed) socket.write(bytes)
      },
      reply: (request, data) => connection.send({ id: request['id'], ok: true, data }),
      fail: (request, code, error, retryAfter) =>
        connection.send({ id: request['id'], ok: false, code, error: error ?? `test peer: ${code}`, ...(retryAfter === undefined ? {} : { retryAfter }) }),
    }
    this.connections.push(connection)
    socket.on('error', () => undefined)
    socket.on('data', (chunk: Buffer) => {
      connection.bytes.push(chunk)
      let frames: Frame[]
      try {
        frames = decoder.push(chunk)
      } catch {
        socket.destroy()
        return
      }
      for (const frame of frames) {
        connection.frames.push(frame)
        if (stage === 'ready') {
          this.onRequest(frame, connection)
        } else if (stage === 'hello') {
          const result = this.hello(frame, connection)
          if (result === 'ready') stage = 'ready'
          else if (result !== undefined) {
            stage = 'finish'
            serverNonce = result.serverNonce
            clientNonce = result.clientNonce
          }
        } else {
          const payload = frame['payload'] as Frame | undefined
          const secret = this.options.secret
          if (secret && payload?.['clientProof'] === computeClientProof(secret, serverNonce, clientNonce)) {
            connection.send({ v: 3, op: 'handshake_finish', ok: true, data: { session: 'test-session' } })
            stage = 'ready'
          } else {
            connection.send({ v: 3, op: 'handshake_finish', ok: false, code: 'UNAUTHORIZED', error: 'bad proof' })
            socket.end()
          }
        }
      }
    })
  }

  private hello(frame: Frame, connection: PeerConnection): 'ready' | { serverNonce: string; clientNonce: string } | undefined {
    const mode = this.options.handshake ?? 'normal'
    const payload = (frame['payload'] ?? {}) as Frame
    const maxVersion = Math.min(Number(payload['maxVersion']), this.options.maxVersion ?? 3)
    if (mode === 'silent') return undefined
    if (mode === 'unknown-version' || maxVersion < Number(payload['minVersion'])) {
      connection.send({ v: 2, op: 'handshake', ok: false, code: 'UNKNOWN_VERSION', error: 'no common version' })
      connection.socket.end()
      return undefined
    }
    connection.version = maxVersion
    if (typeof payload['clientNonce'] === 'string' && maxVersion >= 3) {
      const clientNonce = payload['clientNonce']
      const serverNonce = generateNonce()
      const secret = mode === 'impostor' ? Buffer.alloc(32, 7) : this.options.secret
      if (!secret) throw new Error('test peer needs a secret for v3')
      const serverProof = computeServerProof(secret, clientNonce, serverNonce)
      connection.send({ v: 3, op: 'handshake', ok: true, data: { version: 3, serverNonce, serverProof } })
      return { serverNonce, clientNonce }
    }
    if (payload['capabilityToken'] !== this.options.legacyToken) {
      connection.send({ v: maxVersion, op: 'handshake', ok: false, code: 'UNAUTHORIZED', error: 'bad token' })
      connection.socket.end()
      return undefined
    }
    connection.send({ v: maxVersion, op: 'handshake', ok: true, data: { version: maxVersion } })
    return 'ready'
  }
}

export const TOKEN = { access_token: 'at-1', expiry: 4_102_444_800, token_type: 'Bearer' }
