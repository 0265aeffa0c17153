// Bundles the `credproxy` command into dist/bundle/ (run after tsc): one ES module for
// the entry and one chunk per lazily imported command, so start-up reads a few files
// instead of resolving ~100 modules. Native and CommonJS dependencies stay external.
import { build } from 'esbuild'
import { rmSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))

// Chunk names carry a content hash: clear the old ones.
rmSync(new URL('../dist/bundle', import.meta.url), { recursive: true, force: true })

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
  external: ['@napi-rs/keyring', 'koffi', 'openid-client'],
  // Chunks sit at the depth of dist/<dir>/*.js: code that finds bin/credproxy.js from
  // import.meta.url (sandbox/shim.ts) resolves the same path bundled or not.
  chunkNames: '[name]-[hash]',
  logLevel: 'warning',
})
