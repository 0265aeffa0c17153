// Bundles the `credproxy` command into dist/bundle/ (run after tsc): one ES module for
// the entry and one chunk per lazily imported command, so start-up reads a few files
// instead of resolving ~100 modules; and one single-file build for the in-sandbox
// commands (below). Native and CommonJS dependencies stay external.
import { build } from 'esbuild'
import { rmSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))

// Chunk names carry a content hash: clear the old ones.
rmSync(new URL('../dist/bundle', import.meta.url), { recursive: true, force: true })

const shared = {
  absWorkingDir: root,
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Read from dist/*.js.map, so stack traces name the TypeScript sources.
  sourcemap: true,
  // Native addons and CommonJS packages load from node_modules as they are.
  external: ['@napi-rs/keyring', 'koffi', 'openid-client'],
  logLevel: 'warning',
}

await build({
  ...shared,
  entryPoints: { credproxy: 'dist/bin.js' },
  outdir: 'dist/bundle',
  splitting: true,
  // Chunks sit at the depth of dist/<dir>/*.js: code that finds bin/credproxy.js from
  // import.meta.url (sandbox/shim.ts) resolves the same path bundled or not.
  chunkNames: '[name]-[hash]',
})

// What runs inside a sandbox before an agent's tool calls (`key get`, `token`, `exec`;
// bin/credproxy.js picks it for exactly those when CREDPROXY_SOCKET is set): one file, no
// chunk to resolve and read. (`--version` stays on the small main entry: it needs no more.) The same main(), with these commands' code only: every other
// dynamic import becomes a module that throws, never reached on those paths (inside a
// sandbox they talk to the broker; host stores, OAuth and the prompt stay unloaded).
const SANDBOX_IMPORTS = new Set(['./key.js', './token.js', './exec.js', '@credproxy/core/client'])
await build({
  ...shared,
  entryPoints: { 'credproxy-sandbox': 'dist/bin.js' },
  outdir: 'dist/bundle',
  splitting: false,
  plugins: [
    {
      name: 'sandbox-commands-only',
      setup(b) {
        b.onResolve({ filter: /.*/ }, (args) =>
          args.kind === 'dynamic-import' && !SANDBOX_IMPORTS.has(args.path) ? { path: args.path, namespace: 'not-in-sandbox-bundle' } : undefined,
        )
        b.onLoad({ filter: /.*/, namespace: 'not-in-sandbox-bundle' }, (args) => ({
          contents: `throw new Error(${JSON.stringify(`credproxy: ${args.path} is not in the sandbox bundle (bin/credproxy.js routes only key get, token and exec here)`)})`,
          loader: 'js',
        }))
      },
    },
  ],
})
