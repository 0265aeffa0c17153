import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

// vitest 4 ignores vitest.workspace.ts: projects must be declared here.
const src = (pkg: string) => fileURLToPath(new URL(`./packages/${pkg}/src/index.ts`, import.meta.url))

export default defineConfig({
  test: {
    projects: [
      {
        resolve: { alias: { '@credproxy/core': src('core') } },
        test: { name: 'core', root: './packages/core', include: ['test/**/*.test.ts'], testTimeout: 20_000 },
      },
      {
        resolve: { alias: { '@credproxy/core': src('core') } },
        test: { name: 'cli', root: './packages/cli', include: ['test/**/*.test.ts'], testTimeout: 30_000, hookTimeout: 60_000 },
      },
    ],
  },
})
