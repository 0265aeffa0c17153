// The PKCE redirect target: an HTTP listener on 127.0.0.1 only (RFC 8252 7.3),
// one path, state checked before anything else, closed after the first answer.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export const REDIRECT_PATH = '/callback'
export const LOOPBACK_HOST = '127.0.0.1'

export interface LoopbackListener {
  port: number
  redirectUri: string
  close(): void
}

export interface CallbackOutcome {
  /** Shown in the browser tab. */
  status: number
  message: string
}

/**
 * `onCallback` gets each request to REDIRECT_PATH whose state matches; it returns what
 * the browser shows and whether the listener is done. Requests with a wrong state get 400.
 */
export async function startLoopbackListener(
  port: number,
  expectedState: string,
  onCallback: (url: URL) => Promise<CallbackOutcome & { done: boolean }>,
): Promise<LoopbackListener> {
  let done = false
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const respond = (status: number, message: string): void => {
      res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', connection: 'close' }).end(`${message}\n`)
    }
    const url = new URL(req.url ?? '/', `http://${LOOPBACK_HOST}`)
    if (req.method !== 'GET' || url.pathname !== REDIRECT_PATH) return respond(404, 'Not found.')
    if (done) return respond(410, 'This login already finished; you can close this window.')
    if (url.searchParams.get('state') !== expectedState) return respond(400, 'This login link does not match the login in progress.')
    const fullUrl = new URL(`${redirectUri}${url.search}`)
    onCallback(fullUrl).then(
      (outcome) => {
        if (outcome.done) {
          done = true
          close()
        }
        respond(outcome.status, outcome.message)
      },
      () => respond(500, 'The login failed; see the terminal.'),
    )
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, LOOPBACK_HOST, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const actualPort = (server.address() as AddressInfo).port
  const redirectUri = `http://${LOOPBACK_HOST}:${actualPort}${REDIRECT_PATH}`
  function close(): void {
    server.close()
    // Browsers keep connections alive; do not let them hold the process open.
    server.closeIdleConnections()
  }
  return { port: actualPort, redirectUri, close }
}
