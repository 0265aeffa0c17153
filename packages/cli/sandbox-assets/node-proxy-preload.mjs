// Loaded into every Node process of a `credproxy run --egress` sandbox (NODE_OPTIONS=--import):
// Node 20 ignores HTTP(S)_PROXY, so fetch gets undici's EnvHttpProxyAgent as its global
// dispatcher and node:https a global agent that tunnels through the proxy with CONNECT.
// Unset HTTPS_PROXY (or a host in NO_PROXY) leaves a connection direct.
import http from 'node:http'
import https from 'node:https'
import tls from 'node:tls'
import { EnvHttpProxyAgent, setGlobalDispatcher } from 'undici'

const proxyText = process.env.HTTPS_PROXY ?? process.env.https_proxy
if (proxyText !== undefined && proxyText !== '') {
  setGlobalDispatcher(new EnvHttpProxyAgent())
  const proxy = new URL(proxyText)
  const noProxy = (process.env.NO_PROXY ?? process.env.no_proxy ?? '')
    .split(',')
    .map((entry) => entry.trim().toLowerCase())
    .filter((entry) => entry !== '')
  const bypass = (host) => {
    const name = host.toLowerCase()
    return noProxy.some((entry) => entry === '*' || name === entry.replace(/^\./, '') || name.endsWith(entry.startsWith('.') ? entry : `.${entry}`))
  }
  const authorization =
    proxy.username === '' ? undefined : `Basic ${Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64')}`

  class TunnelAgent extends https.Agent {
    createConnection(options, callback) {
      const host = options.host ?? 'localhost'
      const port = options.port ?? 443
      if (bypass(host)) return super.createConnection(options, callback)
      const target = `${host.includes(':') ? `[${host}]` : host}:${port}`
      const request = http.request({
        host: proxy.hostname,
        port: proxy.port === '' ? 80 : Number(proxy.port),
        method: 'CONNECT',
        path: target,
        headers: { host: target, ...(authorization === undefined ? {} : { 'proxy-authorization': authorization }) },
        agent: false,
      })
      request.once('connect', (response, socket) => {
        if (response.statusCode !== 200) {
          socket.destroy()
          callback(new Error(`the egress proxy refused CONNECT ${target}: ${response.statusCode} ${response.statusMessage ?? ''}`.trim()))
          return
        }
        callback(null, tls.connect({ ...options, socket, servername: options.servername ?? host }))
      })
      request.once('error', (error) => callback(error))
      request.end()
      return undefined
    }
  }
  https.globalAgent = new TunnelAgent({ keepAlive: true })
}
