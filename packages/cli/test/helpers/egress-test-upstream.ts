// A minimal HTTPS upstream for the engine's egress tests: its own test CA (made
// with the same CA code as the proxy, in a separate instance), a leaf per SNI name,
// and a log of what each request carried. The test supplies the handler.
import { randomUUID } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { createSecureContext, type TLSSocket } from 'node:tls'
import { SessionCa } from '../../src/egress/ca.js'

export interface ReceivedRequest {
  method: string
  url: string
  headers: IncomingMessage['headers']
  body: Buffer
  servername: string | undefined
  /** CN of the client certificate, when the upstream asked for one. */
  clientCn?: string
}

export interface TestUpstream {
  port: number
  caPem: string
  /** The CA written to a file of its own in `dir`, for a rule's `ca`. */
  caFile: string
  received: ReceivedRequest[]
  server: Server
  close(): Promise<void>
}

export type UpstreamHandler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void

export interface TestUpstreamOptions {
  stream?: boolean
  names?: string[]
  /** Demand a client certificate signed by this CA (mTLS). */
  clientCaPem?: string
}

/** `handler` gets each request once its body has been read (`stream: true` hands it over unread). */
export async function startTestUpstream(dir: string, handler: UpstreamHandler, options: TestUpstreamOptions = {}): Promise<TestUpstream> {
  const ca = await SessionCa.create('test-upstream')
  const names = options.names ?? ['api.example.test']
  const defaultLeaf = await ca.leafFor(names[0] ?? 'api.example.test')
  const received: ReceivedRequest[] = []
  const server = createServer(
    {
      cert: defaultLeaf.certPem,
      key: defaultLeaf.keyPem,
      ...(options.clientCaPem === undefined ? {} : { requestCert: true, rejectUnauthorized: true, ca: options.clientCaPem }),
      SNICallback: (name, callback) => {
        ca.leafFor(name).then(
          // The SNI context replaces the server's: it must carry the client CA too.
          (leaf) => callback(null, options.clientCaPem === undefined ? leaf.context : createSecureContext({ cert: leaf.certPem, key: leaf.keyPem, ca: options.clientCaPem })),
          (error: unknown) => callback(error as Error),
        )
      },
    },
    (req, res) => {
      const servername = (req.socket as TLSSocket).servername || undefined
      const peer = options.clientCaPem === undefined ? undefined : (req.socket as TLSSocket).getPeerCertificate()
      const clientCn = typeof peer?.subject?.CN === 'string' ? { clientCn: peer.subject.CN } : {}
      if (options.stream === true) {
        received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.alloc(0), servername, ...clientCn })
        handler(req, res, Buffer.alloc(0))
        return
      }
      const chunks: Buffer[] = []
      req.on('data', (chunk: Buffer) => chunks.push(chunk))
      req.on('end', () => {
        const body = Buffer.concat(chunks)
        received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body, servername, ...clientCn })
        handler(req, res, body)
      })
    },
  )
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const caFile = join(dir, `upstream-ca-${randomUUID()}.pem`)
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
