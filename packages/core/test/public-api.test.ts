// The public doors of @credproxy/core name what they export: no `export *`, so a new
// protocol internal never becomes public API by accident.
import { readFileSync } from 'node:fs'
import { describe, expect, test } from 'vitest'
import * as client from '../src/client-api.js'
import * as core from '../src/index.js'

const read = (file: string): string => readFileSync(new URL(`../src/${file}`, import.meta.url), 'utf8')

describe('public API of @credproxy/core', () => {
  test('client-api.ts re-exports by name only; index.ts adds named exports to the whole client door', () => {
    expect(read('client-api.ts')).not.toMatch(/^export (type )?\*/m)
    expect([...read('index.ts').matchAll(/^export (?:type )?\* from '([^']+)'/gm)].map((m) => m[1])).toEqual(['./client-api.js'])
  })

  test('the answer schemas the client checks by hand stay internal', () => {
    for (const name of ['OP_DATA_SCHEMAS', 'ResponseSchema', 'HandshakeResponseDataSchema', 'HandshakeFinishDataSchema', 'isHex64']) {
      expect(Object.keys(core), name).not.toContain(name)
    }
  })

  test('every value the light client door exports is the same object in the full door', () => {
    const full = core as unknown as Record<string, unknown>
    for (const [name, value] of Object.entries(client)) expect(full[name], name).toBe(value)
  })
})
