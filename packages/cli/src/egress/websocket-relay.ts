// The bytes after a WebSocket upgrade (101): piped both ways, or, on a connection
// the proxy injected, through text-frame rewriters (placeholder out as the secret,
// echoed secret back as the placeholder; a foreign placeholder closes the connection).
import type { Duplex } from 'node:stream'
import type { PlaceholderSet } from './placeholders.js'
import { scrubBuffer } from './response-hygiene.js'
import { WsTextRewriter } from './ws-frames.js'

export interface FrameRewrite {
  rule: string
  secret: string
  placeholder: string
  /** Secret forms and their placeholders, for scrubbing the upstream's frames. */
  forms: Array<[Buffer, Buffer]>
  placeholders: PlaceholderSet
}

/** Connect client `socket` and `upgraded.socket`; `onRefused(reason)` when a frame is refused (both are closed). */
export function relayUpgradedSocket(
  socket: Duplex,
  head: Buffer,
  upgraded: { socket: Duplex; head: Buffer },
  rewrite: FrameRewrite | null,
  onRefused: (reason: string) => void,
): void {
  upgraded.socket.once('error', () => socket.destroy())
  socket.once('error', () => upgraded.socket.destroy())
  upgraded.socket.once('close', () => socket.destroy())
  socket.once('close', () => upgraded.socket.destroy())
  if (rewrite === null) {
    if (upgraded.head.length > 0) socket.write(upgraded.head)
    if (head.length > 0) upgraded.socket.write(head)
    upgraded.socket.pipe(socket)
    socket.pipe(upgraded.socket)
    return
  }
  const secretBytes = Buffer.from(rewrite.secret)
  const placeholderBytes = Buffer.from(rewrite.placeholder)
  const allowed: ReadonlySet<string> = new Set([rewrite.rule])
  const outbound = new WsTextRewriter((payload) => {
    const scanned = rewrite.placeholders.scan(payload.toString('utf8'), 'websocket', allowed, [])
    if (!scanned.ok) return new Error(scanned.reason)
    return scrubBuffer(payload, [[placeholderBytes, secretBytes]])
  })
  const inbound = new WsTextRewriter((payload) => scrubBuffer(payload, rewrite.forms))
  const fail = (error: Error): void => {
    socket.destroy()
    upgraded.socket.destroy()
    const known = error.message === 'foreign-placeholder' || error.message === 'unknown-placeholder'
    onRefused(`${known ? error.message : 'frame-refused'}-in-websocket`)
  }
  outbound.once('error', fail)
  inbound.once('error', fail)
  upgraded.socket.pipe(inbound).pipe(socket)
  socket.pipe(outbound).pipe(upgraded.socket)
  if (upgraded.head.length > 0) inbound.write(upgraded.head)
  if (head.length > 0) outbound.write(head)
}
