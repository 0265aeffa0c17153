// What `credproxy auth login` shows, the same on the host and inside a sandbox:
// where to go, the code to enter, progress. Never a token value.
import { createInterface } from 'node:readline'
import type { LoginUI, VerificationInfo } from '@credproxy/core'
import { writeLine, type CliIO } from '../cli-io.js'
import { escapeUntrusted } from '../escape.js'

export interface TerminalLoginUIOptions {
  /** Ask for a pasted code in redirect flows (only when stdin is a terminal). */
  allowPaste: boolean
  /** Called with the URL the user must open; returns true when a browser was opened. */
  openUrl?: (url: string) => Promise<boolean>
}

export function createTerminalLoginUI(io: CliIO, options: TerminalLoginUIOptions): LoginUI {
  const out = io.stderr
  let lastProgress = ''
  const ui: LoginUI = {
    showVerification(info: VerificationInfo) {
      const target = `${info.provider}${info.bucket === undefined || info.bucket === 'default' ? '' : ` (bucket ${info.bucket})`}`
      if (info.flowType === 'device_code') {
        writeLine(out, `To log in to ${target}, open:`)
        writeLine(out, `  ${escapeUntrusted(info.verificationUri ?? info.verificationUriComplete ?? '')}`)
        writeLine(out, `and enter the code: ${escapeUntrusted(info.userCode ?? '')}`)
        if (info.verificationUriComplete !== undefined) writeLine(out, `(or open ${escapeUntrusted(info.verificationUriComplete)})`)
        return
      }
      const url = info.authUrl ?? ''
      writeLine(out, `To log in to ${target}, open this URL in a browser:`)
      writeLine(out, `  ${escapeUntrusted(url)}`)
      if (options.openUrl !== undefined) {
        void options.openUrl(url).then((opened) => {
          if (opened) writeLine(out, '(opened in your browser)')
        })
      }
      if (options.allowPaste && io.stdin.isTTY === true) {
        writeLine(out, 'If the browser cannot reach this machine, paste the code (or the whole redirect URL) here.')
      }
    },
    showProgress(text: string) {
      if (text === lastProgress) return
      lastProgress = text
      writeLine(out, escapeUntrusted(text))
    },
  }
  if (options.allowPaste && io.stdin.isTTY === true) {
    ui.promptForCode = ({ signal }) => readLine(io, signal)
  }
  return ui
}

/**
 * One non-empty line from stdin; rejects on EOF or abort. The promise is settled
 * before readline is closed: close() emits 'close' at once, and a rejection there
 * first would drop the pasted code (the login then kept polling in silence).
 */
function readLine(io: CliIO, signal: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: io.stdin, terminal: false })
    let settled = false
    const finish = (fn: () => void) => {
      if (settled) return
      settled = true
      signal.removeEventListener('abort', onAbort)
      fn()
      rl.close()
    }
    const onAbort = () => finish(() => reject(new Error('prompt aborted')))
    signal.addEventListener('abort', onAbort, { once: true })
    rl.on('line', (line) => {
      if (line.trim() !== '') {
        finish(() => {
          writeLine(io.stderr, 'Exchanging the code for a token...')
          resolve(line.trim())
        })
      }
    })
    rl.once('close', () => finish(() => reject(new Error('stdin closed'))))
  })
}
