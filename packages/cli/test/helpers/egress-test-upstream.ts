// A minimal HTTPS upstream for the engine's egress tests: its own test CA (made
// with the same CA code as the proxy, in a separate instance), a leaf per SNI name,
// and a log of what each request carried. The test supplies the handler.
import { writeFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:https'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import type { TLSSocket } from 'node:tls'
import { SessionCa } from '../../src/egress/ca.js'

export interface ReceivedRequest {
  method: string
  url: string
  headers: IncomingMessage['headers']
  body: Buffer
  servername: string | undefined
}

export interface TestUpstream {
  port: number
  caPem: string
  /** The CA written to `<dir>/upstream-ca.pem`, for a rule's `ca`. */
  caFile: string
  received: ReceivedRequest[]
  server: Server
  close(): Promise<void>
}

export type UpstreamHandler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void

/** `handler` gets each request once its body has been read (`stream: true` hands it over unread). */
export async function startTestUpstream(dir: string, handler: UpstreamHandler, options: { stream?: boolean; names?: string[] } = {}): Promise<TestUpstream> {
  const ca = await SessionCa.create('test-upstream')
  const names = options.names ?? ['api.example.test']
  const defaultLeaf = await ca.leafFor(names[0] ?? 'api.example.test')
  const received: ReceivedRequest[] = []
  const server = createServer(
    {
      cert: defaultLeaf.certPem,
      key: defaultLeaf.keyPem,
      SNICallback: (name, callback) => {
        ca.leafFor(name).then(
          (leaf) => callback(null, leaf.context),
          (error: unknown) => callback(error as Error),
        )
      },
    },
    (req, res) => {
      const servername = (req.socket as TLSSocket).servername || undefined
      if (options.stream === true) {
        received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.alloc(0), servername })
        handler(req, res, Buffer.alloc(0))
        return
      }
      const chunks: Buffer[] = []
      req.on('data', (chunk: Buffer) => chunks.push(chunk))
      req.on('end', () => {
        const body = Buffer.concat(chunks)
        received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body, servername })
        handler(req, res, body)
      })
    },
  )
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const caFile = join(dir, 'upstream-ca.pem')
  writeFileSync(caFile, ca.certPem)
  return {
    port: (server.address() as AddressInfo).port,
    caPem: ca.certPem,
    caFile,
    received,
    server,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
