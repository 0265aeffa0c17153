// HTTP/2 mechanics of the egress proxy: a stream view of an intercepted TLS socket
// for Node's HTTP/2 server, and relaying one upstream HTTP/2 response (headers,
// body, trailers) to the client stream with the secret scrubbed everywhere.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'
import { constants as http2Constants, type ClientHttp2Stream, type IncomingHttpHeaders as Http2IncomingHeaders, type ServerHttp2Stream } from 'node:http2'
import { Duplex as DuplexStream, type Duplex } from 'node:stream'
import type { TLSSocket } from 'node:tls'
import { stripHopByHop } from './inject.js'
import { scrubHeaders, SecretScrubber, secretForms } from './response-hygiene.js'

/**
 * A plain Duplex over a TLS socket whose handshake is done. Node's HTTP/2 session cannot
 * take over such a socket's native handle (it never sees the client preface); through a
 * JS stream it reads the decrypted bytes like any other stream.
 */
export function streamOf(tls: TLSSocket): Duplex {
  const duplex = new DuplexStream({
    read() {
      tls.resume()
    },
    write(chunk: Buffer, _encoding, callback) {
      tls.write(chunk, callback)
    },
    final(callback) {
      tls.end()
      callback()
    },
    destroy(error, callback) {
      tls.destroy(error ?? undefined)
      callback(error)
    },
  })
  tls.on('data', (chunk: Buffer) => {
    if (!duplex.push(chunk)) tls.pause()
  })
  tls.once('end', () => duplex.push(null))
  tls.once('close', () => duplex.destroy())
  tls.once('error', (error) => duplex.destroy(error))
  // The HTTP/2 server checks the negotiated protocol on the socket it is given.
  Object.defineProperty(duplex, 'alpnProtocol', { value: 'h2' })
  return duplex
}

export function waitForResponse(stream: ClientHttp2Stream): Promise<Http2IncomingHeaders> {
  return new Promise((resolve, reject) => {
    stream.once('response', (headers) => {
      stream.off('error', reject)
      resolve(headers)
    })
    stream.once('error', reject)
  })
}

/**
 * Relay an upstream HTTP/2 response to the client stream: pseudo and hop-by-hop
 * headers dropped, the secret replaced by the placeholder in headers, body and
 * trailers. `onClose(status, bytesOut)` runs once the client stream closes.
 */
export function relayH2Response(
  stream: ServerHttp2Stream,
  upstreamStream: ClientHttp2Stream,
  response: Http2IncomingHeaders,
  secret: string | null,
  placeholder: string,
  sent: OutgoingHttpHeaders,
  onClose: (status: number, bytesOut: number) => void,
): void {
    const forms = secret === null ? [] : secretForms(secret, placeholder, sent)
    const status = Number(response[':status'] ?? 502)
    const outHeaders: OutgoingHttpHeaders = {}
    for (const [name, value] of Object.entries(stripHopByHop(response))) if (!name.startsWith(':')) outHeaders[name] = value
    const scrubbed = forms.length === 0 ? outHeaders : scrubHeaders(outHeaders as IncomingHttpHeaders, forms)
    if (forms.length > 0 && placeholder.length !== (secret ?? '').length) delete scrubbed['content-length']
    let trailers: IncomingHttpHeaders = {}
    upstreamStream.once('trailers', (received: IncomingHttpHeaders) => {
      trailers = received
    })
    stream.respond({ ...scrubbed, ':status': status }, { waitForTrailers: true })
    stream.once('wantTrailers', () => {
      const clean: OutgoingHttpHeaders = {}
      for (const [name, value] of Object.entries(trailers)) if (!name.startsWith(':')) clean[name] = value
      stream.sendTrailers(forms.length === 0 ? clean : scrubHeaders(clean as IncomingHttpHeaders, forms))
    })
    let bytesOut = 0
    upstreamStream.on('data', (chunk: Buffer) => {
      bytesOut += chunk.length
    })
    const source = forms.length === 0 ? upstreamStream : upstreamStream.pipe(new SecretScrubber(forms))
    source.pipe(stream)
    upstreamStream.on('error', () => stream.close(http2Constants.NGHTTP2_INTERNAL_ERROR))
    stream.once('close', () => {
      if (!upstreamStream.closed) upstreamStream.close()
      onClose(status, bytesOut)
    })
}
