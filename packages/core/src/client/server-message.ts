// Turning an error answer into a ProxyError. The server's text is shown to users,
// so control characters (terminal escapes) are removed and its length is capped.
import { ERROR_CODES, isErrorCode, ProxyError } from '../protocol/errors.js'

/** Longest server error text kept; longer text is cut. */
export const MAX_SERVER_MESSAGE_CHARS = 512

// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/g

export function cleanServerMessage(text: string): string {
  const clean = text.replace(CONTROL_CHARS, ' ').trim()
  return clean.length > MAX_SERVER_MESSAGE_CHARS ? `${clean.slice(0, MAX_SERVER_MESSAGE_CHARS)}…` : clean
}

export interface ErrorAnswer {
  code: string
  error?: string | undefined
  retryAfter?: number | undefined
}

/** A code the registry does not know (a newer server) becomes INTERNAL_ERROR naming it. */
export function errorFromAnswer(answer: ErrorAnswer): ProxyError {
  const text = answer.error === undefined ? '' : cleanServerMessage(answer.error)
  const retry = answer.retryAfter
  const options = typeof retry === 'number' && Number.isFinite(retry) && retry >= 0 ? { retryAfter: retry } : {}
  if (!isErrorCode(answer.code)) {
    const code = cleanServerMessage(answer.code).slice(0, 64)
    return new ProxyError('INTERNAL_ERROR', `broker answered unknown error code ${code}${text ? `: ${text}` : ''}`, options)
  }
  return new ProxyError(answer.code, text || ERROR_CODES[answer.code], options)
}
