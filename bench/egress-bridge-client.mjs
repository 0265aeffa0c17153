// Runs inside `credproxy run --egress`: N sequential keep-alive GETs to URL through the
// proxy (node:https through the preload's tunnelling global agent), then prints one JSON
// line: p50/p90 in ms and the RSS of the forwarder process (socat or node) when one runs here.
import { readdirSync, readFileSync } from 'node:fs'
import https from 'node:https'

const [url, countText] = process.argv.slice(2)
const count = Number(countText ?? 2000)
const once = () =>
  new Promise((resolve, reject) => {
    const started = process.hrtime.bigint()
    https
      .get(url, (res) => {
        res.resume()
        res.on('end', () => resolve(Number(process.hrtime.bigint() - started) / 1e6))
      })
      .on('error', reject)
  })
for (let i = 0; i < 200; i++) await once()
const samples = []
for (let i = 0; i < count; i++) samples.push(await once())
samples.sort((a, b) => a - b)
let forwarderRssKiB = null
for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    if (/^Name:\s+socat$/m.test(status) || cmdline.includes('egress-forwarder.mjs')) forwarderRssKiB = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1])
  } catch {
    // Gone meanwhile, or not ours to read.
  }
}
console.log(JSON.stringify({ p50: samples[Math.floor(samples.length / 2)], p90: samples[Math.floor(samples.length * 0.9)], forwarderRssKiB }))
