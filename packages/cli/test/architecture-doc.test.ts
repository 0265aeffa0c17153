// dev-docs/architecture.md "Where things are" is a map a newcomer follows: every path it
// names must exist.
import { existsSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect, test } from 'vitest'

const repoRoot = resolve(fileURLToPath(new URL('../../..', import.meta.url)))

test('every path in the "Where things are" map exists', () => {
  const doc = readFileSync(join(repoRoot, 'dev-docs/architecture.md'), 'utf8')
  const start = doc.indexOf('## Where things are')
  expect(start).toBeGreaterThanOrEqual(0)
  const end = doc.indexOf('\n## ', start + 1)
  const section = doc.slice(start, end < 0 ? undefined : end)
  const paths = [...section.matchAll(/`((?:packages|bench|scripts|dev-docs)\/[^`\s]+)`/g)].map((m) => m[1] ?? '')
  expect(paths.length).toBeGreaterThan(10)
  expect(paths.filter((path) => !existsSync(join(repoRoot, path)))).toEqual([])
})
