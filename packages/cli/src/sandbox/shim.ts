// The `credproxy` command inside a sandbox: a two-line script in a private host
// directory, bound read-only first on PATH, that runs this very installation.
import { existsSync, realpathSync } from 'node:fs'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** packages/cli/bin/credproxy.js of this installation (src/ and dist/ sit at the same depth). */
export function credproxyBinPath(): string {
  return realpathSync(fileURLToPath(new URL('../../bin/credproxy.js', import.meta.url)))
}

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`
}

export interface Shim {
  dir: string
  remove(): Promise<void>
}

/**
 * Write the shim. `node` is an absolute host path for bwrap and none (same
 * filesystem), or the bare `node` of the image for containers.
 */
export async function createShim(node: string = process.execPath): Promise<Shim> {
  const dir = await mkdtemp(join(tmpdir(), 'credproxy-shim-'))
  const script = `#!/bin/sh\nexec ${shellQuote(node)} ${shellQuote(credproxyBinPath())} "$@"\n`
  const file = join(dir, 'credproxy')
  await writeFile(file, script, { mode: 0o755 })
  await chmod(dir, 0o755)
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) }
}

/**
 * Host directories the shim needs: the node installation and the directory
 * whose node_modules resolve credproxy's dependencies. bwrap re-binds them
 * read-only when they sit under a hidden path (nvm under $HOME, an npx cache).
 */
export function runtimeDirs(): string[] {
  const nodePrefix = dirname(dirname(realpathSync(process.execPath)))
  const cliRoot = dirname(dirname(credproxyBinPath()))
  const require = createRequire(join(cliRoot, 'package.json'))
  const dirs = [nodePrefix, cliRoot]
  for (const dep of ['@credproxy/core', 'zod']) {
    try {
      dirs.push(packageRoot(realpathSync(require.resolve(dep))))
    } catch {
      // Not resolvable from here: the shim would fail the same way on the host.
    }
  }
  return dirs
}

/** The nearest ancestor directory of file holding a package.json. */
function packageRoot(file: string): string {
  let dir = dirname(file)
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir)
  return dir
}
