// Inside a network-less sandbox: listen on 127.0.0.1:PORT and pipe every connection to the
// session's egress proxy socket (bound read-only). Prints "ready" on fd 1 once listening.
// Usage: node egress-forwarder.mjs PORT SOCKET
import { connect, createServer } from 'node:net'

const [port, socketPath] = process.argv.slice(2)
const server = createServer({ noDelay: true }, (client) => {
  const upstream = connect(socketPath)
  client.on('error', () => upstream.destroy())
  upstream.on('error', () => client.destroy())
  client.pipe(upstream)
  upstream.pipe(client)
})
server.listen(Number(port), '127.0.0.1', () => process.stdout.write('ready\n'))
