// Runs inside `credproxy run` (see startup.bench.ts): times each command here, in the
// sandbox, and prints one JSON object {label: [ms, ...]} on stdout.
import { spawnSync } from 'node:child_process'

const [bin, runs, key, provider, floor] = process.argv.slice(2)
// The session secret comes on an inherited fd, as it does for a shell's children.
const secretFd = Number(process.env.CREDPROXY_SECRET_FD)
const stdio = (stderr) => ['ignore', 'ignore', stderr, ...(Number.isInteger(secretFd) ? Array(secretFd - 2).fill('ignore').fill(secretFd, -1) : [])]
const commands = {
  'node -e 0': ['-e', '0'],
  'credproxy --version': [bin, '--version'],
  'credproxy key get': [bin, 'key', 'get', key],
  'credproxy token': [bin, 'token', provider],
  ...(floor === undefined ? {} : { 'floor: core client get_key, one file, no CLI': [floor, key] }),
}
const out = {}
for (const [label, args] of Object.entries(commands)) {
  const check = spawnSync(process.execPath, args, { stdio: stdio('inherit') })
  if (check.status !== 0) throw new Error(`${label} exited ${check.status} inside the sandbox`)
  out[label] = []
}
// Interleaved rounds, so a load change on the machine hits every row alike.
for (let i = 0; i < Number(runs); i++) {
  for (const [label, args] of Object.entries(commands)) {
    const start = process.hrtime.bigint()
    spawnSync(process.execPath, args, { stdio: stdio('ignore') })
    out[label].push(Number(process.hrtime.bigint() - start) / 1e6)
  }
}
process.stdout.write(JSON.stringify(out))
