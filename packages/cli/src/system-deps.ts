// The Debian packages a first run needs, installed the way scripts/install-system-deps.sh
// installs them (apt-get update, then install without recommends) when we are root and
// apt-get exists; otherwise the one command the user should run.
import { spawn } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { join } from 'node:path'
import type { Writable } from 'node:stream'
import { writeLine } from './cli-io.js'

/** An executable named name on env.PATH, or null. */
export function findOnPath(name: string, env: NodeJS.ProcessEnv): string | null {
  for (const dir of (env['PATH'] ?? '').split(':')) {
    if (dir === '') continue
    const path = join(dir, name)
    try {
      accessSync(path, constants.X_OK)
      return path
    } catch {
      // not here
    }
  }
  return null
}

/** The one command that installs packages, for a user who is not root (or has no apt-get). */
export function installCommand(packages: readonly string[], env: NodeJS.ProcessEnv): string {
  const list = packages.join(' ')
  if (findOnPath('apt-get', env) !== null) return `sudo apt-get update && sudo apt-get install -y --no-install-recommends ${list}`
  if (findOnPath('dnf', env) !== null) return `sudo dnf install -y ${list}`
  return `install ${list} with your package manager (Debian/Ubuntu: sudo apt-get install ${list})`
}

/** Whether this process may install Debian packages itself: root, with apt-get on PATH. */
export function canInstallDebianPackages(env: NodeJS.ProcessEnv): boolean {
  return process.getuid?.() === 0 && findOnPath('apt-get', env) !== null
}

function runStep(args: string[], env: NodeJS.ProcessEnv, log: Writable): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn('apt-get', args, {
      env: { ...env, DEBIAN_FRONTEND: 'noninteractive' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    // apt-get's own lines go to our stderr: the user sees what is being installed.
    child.stdout.on('data', (chunk: Buffer) => log.write(chunk))
    child.stderr.on('data', (chunk: Buffer) => log.write(chunk))
    child.on('error', () => resolve(127))
    child.on('close', (code) => resolve(code ?? 1))
  })
}

/** apt-get update, then apt-get install -y --no-install-recommends packages; true when the install exits 0. */
export async function installDebianPackages(packages: readonly string[], env: NodeJS.ProcessEnv, log: Writable): Promise<boolean> {
  writeLine(log, `credproxy: installing ${packages.join(' ')}: apt-get update && apt-get install -y --no-install-recommends ${packages.join(' ')}`)
  // Offline, the package lists on disk may still know the package: try the install anyway.
  if ((await runStep(['update', '-qq'], env, log)) !== 0) writeLine(log, 'credproxy: apt-get update failed; trying the install with the package lists already on this machine')
  // Another apt-get (unattended upgrades) may hold the lock for a while: wait rather than fail.
  return (await runStep(['install', '-y', '-qq', '-o', 'DPkg::Lock::Timeout=120', '--no-install-recommends', ...packages], env, log)) === 0
}
