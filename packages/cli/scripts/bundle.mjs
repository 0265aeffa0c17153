// Bundles the `credproxy` command into dist/bundle/ (run after tsc): one ES module for
// the entry and one chunk per lazily imported command, so start-up reads a few files
// instead of resolving ~100 modules. Native and CommonJS dependencies stay external.
import { build } from 'esbuild'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))

await build({
  absWorkingDir: root,
  entryPoints: { credproxy: 'dist/bin.js' },
  outdir: 'dist/bundle',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Read from dist/*.js.map, so stack traces name the TypeScript sources.
  sourcemap: true,
  // Native addons and CommonJS packages load from node_modules as they are.
  external: ['@napi-rs/keyring', 'koffi', 'proper-lockfile', 'openid-client'],
  chunkNames: 'chunks/[name]-[hash]',
  logLevel: 'warning',
})
