import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

// vitest 4 ignores vitest.workspace.ts: projects must be declared here.
const src = (pkg: string, file = 'index.ts') => fileURLToPath(new URL(`./packages/${pkg}/src/${file}`, import.meta.url))
// Exact matches: '@credproxy/core/client' is its own entry (the zod-free client API).
const coreAlias = [
  { find: /^@credproxy\/core$/, replacement: src('core') },
  { find: /^@credproxy\/core\/client$/, replacement: src('core', 'client-api.ts') },
]

export default defineConfig({
  test: {
    projects: [
      {
        resolve: { alias: coreAlias },
        test: { name: 'core', root: './packages/core', include: ['test/**/*.test.ts'], testTimeout: 20_000 },
      },
      {
        resolve: { alias: coreAlias },
        test: { name: 'cli', root: './packages/cli', include: ['test/**/*.test.ts'], testTimeout: 30_000, hookTimeout: 60_000 },
      },
    ],
  },
})
