import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, test } from 'vitest'
import { statusMark, useColor } from '../src/cli-io.js'

const src = join(import.meta.dirname, '..', 'src')

describe('terminal colors', () => {
  test('color only on a terminal, and never with NO_COLOR or TERM=dumb', () => {
    expect(useColor({ isTTY: true }, {})).toBe(true)
    expect(useColor({ isTTY: false }, {})).toBe(false)
    expect(useColor({ isTTY: true }, { NO_COLOR: '1' })).toBe(false)
    expect(useColor({ isTTY: true }, { TERM: 'dumb' })).toBe(false)
  })

  test('statusMark: green ✓ and red failure text with color, plain text without', () => {
    expect(statusMark(true, true)).toBe('\u001b[32m✓\u001b[39m')
    expect(statusMark(false, true, '✗ FAIL')).toBe('\u001b[31m✗ FAIL\u001b[39m')
    expect(statusMark(true, false)).toBe('✓')
    expect(statusMark(false, false, '✗ FAIL')).toBe('✗ FAIL')
  })

  test('no source file writes raw ANSI escapes: colors go through util.styleText', () => {
    const raw = readdirSync(src, { recursive: true, encoding: 'utf8' })
      .filter((file) => file.endsWith('.ts') && file !== 'escape.ts')
      .filter((file) => /\\u001b\[|\\x1b\[|\\033\[/.test(readFileSync(join(src, file), 'utf8')))
    expect(raw).toEqual([])
  })
})
