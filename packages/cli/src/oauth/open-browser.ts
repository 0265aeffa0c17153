// Open a URL in the host's browser without a shell, when a desktop is there to show it.
// The URL itself never goes on the opener's command line: /proc/<pid>/cmdline is readable
// by every local user, and a login URL carries the PKCE state. The opener gets the path of
// a 0600 page (in a 0700 directory) that redirects to the URL. The caller always prints the URL too.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PRIVATE_FILE_MODE } from '../fs-private.js'

/** How long the redirect page stays on disk: enough for a slow browser start (ms). */
export const REDIRECT_PAGE_TTL_MS = 120_000
export const REDIRECT_PAGE_NAME = 'credproxy-login.html'

export function canOpenBrowser(env: NodeJS.ProcessEnv, platform: NodeJS.Platform = process.platform): boolean {
  if (env['CREDPROXY_NO_BROWSER'] !== undefined) return false
  if (platform === 'darwin' || platform === 'win32') return true
  return Boolean(env['DISPLAY'] ?? env['WAYLAND_DISPLAY'])
}

function htmlAttribute(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

/** A private page that sends the browser on to url; removed after the TTL or when this process exits. */
function writeRedirectPage(url: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'credproxy-login-'))
  const page = join(dir, REDIRECT_PAGE_NAME)
  const href = htmlAttribute(url)
  writeFileSync(
    page,
    `<!doctype html><html><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">` +
      `<meta http-equiv="refresh" content="0;url=${href}"><title>credproxy login</title></head>` +
      `<body><a href="${href}">Continue to the login page</a></body></html>\n`,
    { mode: PRIVATE_FILE_MODE, flag: 'wx' },
  )
  const remove = (): void => rmSync(dir, { recursive: true, force: true })
  process.once('exit', remove)
  setTimeout(() => {
    process.off('exit', remove)
    remove()
  }, REDIRECT_PAGE_TTL_MS).unref()
  return page
}

/** Resolves true when the opener started; false when there is none. Never throws. */
export function openBrowser(url: string, env: NodeJS.ProcessEnv, platform: NodeJS.Platform = process.platform): Promise<boolean> {
  if (!/^https?:\/\//.test(url) || !canOpenBrowser(env, platform)) return Promise.resolve(false)
  return new Promise((resolve) => {
    try {
      const page = writeRedirectPage(url)
      const [command, args] =
        platform === 'darwin' ? ['open', [page]] : platform === 'win32' ? ['explorer.exe', [page]] : ['xdg-open', [page]]
      const child = spawn(command, args as string[], { stdio: 'ignore', detached: true, env })
      child.once('error', () => resolve(false))
      child.once('spawn', () => {
        child.unref()
        resolve(true)
      })
    } catch {
      resolve(false)
    }
  })
}
