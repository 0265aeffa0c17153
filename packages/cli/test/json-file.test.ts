// The one parse-then-validate path of credproxy's JSON files.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, test } from 'vitest'
import * as z from 'zod'
import { exitCodeFor } from '../src/cli.js'
import { CredproxyError } from '../src/errors.js'
import { EXIT } from '../src/exit-codes.js'
import { parseJsonFile, safeParseJson } from '../src/json-file.js'

const Schema = z.strictObject({ version: z.literal(1), client: z.strictObject({ id: z.string() }) })
const SECRET = 'sk-do-not-print-me-0123'

function thrown(fn: () => unknown): CredproxyError {
  try {
    fn()
  } catch (error) {
    return error as CredproxyError
  }
  throw new Error('did not throw')
}

describe('parseJsonFile', () => {
  test('a syntax error names the file and the line and column, never the content', () => {
    const text = `{"version": 1,\n "client": {"id": "${SECRET}" "x": 1}}`
    const error = thrown(() => parseJsonFile(text, '/cfg/a.json', Schema, { hint: 'Fix it.' }))
    expect(error).toBeInstanceOf(CredproxyError)
    expect(error.code).toBe('INVALID_FILE')
    expect(exitCodeFor(error)).toBe(EXIT.FAILURE)
    expect(error.message).toMatch(/^\/cfg\/a\.json is not valid JSON \(line 2, column \d+\)$/)
    expect(`${error.message} ${error.hint}`).not.toContain(SECRET)
  })

  test('a schema error names the file and the field, never the value', () => {
    const error = thrown(() => parseJsonFile(`{"version":1,"client":{"id":7,"x":"${SECRET}"}}`, '/cfg/a.json', Schema, { hint: (p) => p.kind }))
    expect(error.message).toMatch(/^\/cfg\/a\.json: invalid field client\.id: /)
    expect(error.hint).toBe('schema')
    expect(error.message).not.toContain(SECRET)
    expect(thrown(() => parseJsonFile('[]', '/cfg/a.json', Schema, { hint: '' })).message).toMatch(/invalid field \(top level\)/)
  })

  test('safeParseJson never throws, and a caller may word its own message', () => {
    expect(safeParseJson('{', Schema)).toEqual({ ok: false, problem: { kind: 'syntax', where: expect.any(String) as string } })
    expect(safeParseJson('{"version":1,"client":{"id":"a"}}', Schema)).toEqual({ ok: true, value: { version: 1, client: { id: 'a' } } })
    const error = thrown(() => parseJsonFile('nope', '/u.json', Schema, { message: () => '/u.json is not a valid usage file', hint: 'Remove it.' }))
    expect(error.message).toBe('/u.json is not a valid usage file')
  })

  test('no other source file pairs JSON.parse with a schema by hand', () => {
    const src = join(import.meta.dirname, '..', 'src')
    const byHand = readdirSync(src, { recursive: true, encoding: 'utf8' })
      .filter((file) => file.endsWith('.ts') && file !== 'json-file.ts')
      .filter((file) => /JSON\.parse\([\s\S]{0,200}?\.safeParse\(|\.safeParse\(JSON\.parse/.test(readFileSync(join(src, file), 'utf8')))
    expect(byHand).toEqual([])
  })
})
