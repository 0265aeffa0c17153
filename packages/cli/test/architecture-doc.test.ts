// dev-docs/architecture.md "Where things are" is how a newcomer finds a mechanism
// in the tree: every file it names must exist.
import { existsSync, readFileSync } from 'node:fs'
import { describe, expect, test } from 'vitest'

const root = new URL('../../../', import.meta.url)
const doc = readFileSync(new URL('dev-docs/architecture.md', root), 'utf8')

describe('dev-docs/architecture.md "Where things are"', () => {
  const start = doc.indexOf('## Where things are')
  const end = doc.indexOf('\n## ', start + 1)
  const section = doc.slice(start, end < 0 ? undefined : end)
  const files = [...section.matchAll(/`(packages\/[^`]+)`/g)].map((m) => m[1] ?? '')

  test('the map exists and names files', () => {
    expect(start).toBeGreaterThanOrEqual(0)
    expect(files.length).toBeGreaterThanOrEqual(5)
  })

  test.each(files)('%s exists', (file) => {
    expect(existsSync(new URL(file, root))).toBe(true)
  })
})
