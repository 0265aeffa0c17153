// dev-docs/egress.md "Limits" lists every egress limit with the code's value, and
// the preset table names every preset.
import { readFileSync } from 'node:fs'
import { describe, expect, test } from 'vitest'
import * as ca from '../src/egress/ca.js'
import * as hostAdapters from '../src/egress/host-adapters.js'
import { EGRESS_PRESETS } from '../src/egress/presets.js'
import * as proxy from '../src/egress/proxy.js'
import * as rules from '../src/egress/rules.js'
import * as upstream from '../src/egress/upstream.js'
import * as wsFrames from '../src/egress/ws-frames.js'

const doc = readFileSync(new URL('../../../dev-docs/egress.md', import.meta.url), 'utf8')
const limitsSection = doc.slice(doc.indexOf('## Limits'), doc.indexOf('\n## ', doc.indexOf('## Limits') + 1))
const documented = new Map([...limitsSection.matchAll(/^\| `([A-Z0-9_]+)` \| (\d+) \|/gm)].map((m) => [m[1] ?? '', Number(m[2])]))

// Shapes of placeholders, not limits anyone runs into.
const NOT_LIMITS = new Set(['MIN_PLACEHOLDER_RANDOM_CHARS', 'MAX_PLACEHOLDER_LENGTH'])

describe('dev-docs/egress.md', () => {
  test('every egress limit in the code has a row with its value', () => {
    const code = Object.entries({ ...ca, ...hostAdapters, ...proxy, ...rules, ...upstream, ...wsFrames }).filter(
      (entry): entry is [string, number] => /^[A-Z0-9_]+$/.test(entry[0]) && typeof entry[1] === 'number' && !NOT_LIMITS.has(entry[0]),
    )
    expect(code.length).toBeGreaterThanOrEqual(8)
    for (const [name, value] of code) expect(documented.get(name), `${name} = ${value} missing from dev-docs/egress.md Limits`).toBe(value)
    for (const name of documented.keys()) expect(code.some(([codeName]) => codeName === name), `${name} is documented but not in the code`).toBe(true)
  })

  test('the preset table names every preset', () => {
    for (const name of Object.keys(EGRESS_PRESETS)) expect(doc).toContain(`| \`${name}\` |`)
  })
})
