// Parse, then validate: the one way credproxy reads its JSON files (providers.json,
// storage.json, usage.json, the session registry, the machine secret, the keyring index,
// stored tokens). A problem names the file and the field, never the file's content.
import type * as z from 'zod'
import { CredproxyError } from './errors.js'

export type JsonProblem =
  /** `where` is "line L, column C" when the parser gave a position. */
  | { kind: 'syntax'; where: string | undefined }
  /** The first schema issue: `field` is its dotted path ('' at the top level), `issue` zod's message. */
  | { kind: 'schema'; field: string; issue: string }

export type JsonResult<T> = { ok: true; value: T } | { ok: false; problem: JsonProblem }

function lineAndColumn(text: string, offset: number): string {
  const before = text.slice(0, offset).split('\n')
  return `line ${before.length}, column ${(before.at(-1)?.length ?? 0) + 1}`
}

/**
 * A hand-written check, for files read on every start-up path (a stored token, the machine
 * secret, envelopes): zod there costs ~40 ms of start-up. The first bad field and why, or undefined.
 */
export type JsonCheck = (value: unknown) => { field: string; issue: string } | undefined

function parseText(text: string): { ok: true; json: unknown } | { ok: false; problem: JsonProblem } {
  try {
    return { ok: true, json: JSON.parse(text) }
  } catch (error) {
    // V8's message quotes the text around the error, which may be a secret: keep only the position.
    const at = /at position (\d+)/.exec((error as Error).message)?.[1]
    return { ok: false, problem: { kind: 'syntax', where: at === undefined ? undefined : lineAndColumn(text, Number(at)) } }
  }
}

/** JSON.parse, then a hand-written check. Never throws. */
export function safeParseCheckedJson<T>(text: string, check: JsonCheck): JsonResult<T> {
  const parsed = parseText(text)
  if (!parsed.ok) return parsed
  const problem = check(parsed.json)
  return problem === undefined ? { ok: true, value: parsed.json as T } : { ok: false, problem: { kind: 'schema', ...problem } }
}

/** JSON.parse, then schema.safeParse. Never throws. */
export function safeParseJson<S extends z.ZodType>(text: string, schema: S): JsonResult<z.output<S>> {
  const read = parseText(text)
  if (!read.ok) return read
  const parsed = schema.safeParse(read.json)
  if (parsed.success) return { ok: true, value: parsed.data }
  const issue = parsed.error.issues[0]
  return { ok: false, problem: { kind: 'schema', field: issue?.path.map(String).join('.') ?? '', issue: issue?.message ?? 'invalid' } }
}

export interface JsonFileMessages {
  /** The next step; may depend on the problem. */
  hint: string | ((problem: JsonProblem) => string)
  /**
   * The message; default: "<file> is not valid JSON (line L, column C)" or
   * "<file>: invalid field <field>: <issue>".
   */
  message?: (problem: JsonProblem) => string
}

/** The file's text parsed and validated, or a CredproxyError (INVALID_FILE) naming the file and the field. */
export function parseJsonFile<S extends z.ZodType>(text: string, file: string, schema: S, messages: JsonFileMessages): z.output<S> {
  const result = safeParseJson(text, schema)
  if (result.ok) return result.value
  throwProblem(file, result.problem, messages)
}

/** parseJsonFile with a hand-written check instead of a zod schema (start-up paths). */
export function parseCheckedJsonFile<T>(text: string, file: string, check: JsonCheck, messages: JsonFileMessages): T {
  const result = safeParseCheckedJson<T>(text, check)
  if (result.ok) return result.value
  throwProblem(file, result.problem, messages)
}

function throwProblem(file: string, problem: JsonProblem, messages: JsonFileMessages): never {
  const message =
    messages.message?.(problem) ??
    (problem.kind === 'syntax'
      ? `${file} is not valid JSON${problem.where === undefined ? '' : ` (${problem.where})`}`
      : `${file}: invalid field ${problem.field || '(top level)'}: ${problem.issue}`)
  throw new CredproxyError('INVALID_FILE', message, { hint: typeof messages.hint === 'string' ? messages.hint : messages.hint(problem) })
}
