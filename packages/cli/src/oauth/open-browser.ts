// Open a URL in the host's browser without a shell (argv only), when a desktop is
// there to show it. The caller always prints the URL too.
import { spawn } from 'node:child_process'

export function canOpenBrowser(env: NodeJS.ProcessEnv, platform: NodeJS.Platform = process.platform): boolean {
  if (env['CREDPROXY_NO_BROWSER'] !== undefined) return false
  if (platform === 'darwin' || platform === 'win32') return true
  return Boolean(env['DISPLAY'] ?? env['WAYLAND_DISPLAY'])
}

/** Resolves true when the opener started; false when there is none. Never throws. */
export function openBrowser(url: string, env: NodeJS.ProcessEnv, platform: NodeJS.Platform = process.platform): Promise<boolean> {
  if (!/^https?:\/\//.test(url) || !canOpenBrowser(env, platform)) return Promise.resolve(false)
  const [command, args] =
    platform === 'darwin' ? ['open', [url]] : platform === 'win32' ? ['explorer.exe', [url]] : ['xdg-open', [url]]
  return new Promise((resolve) => {
    try {
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
