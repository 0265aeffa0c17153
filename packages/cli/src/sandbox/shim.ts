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
 * Host directories the shim needs: the node installation, this package, every
 * node_modules directory Node searches from it (an npm workspace resolves
 * `@credproxy/core` through a symlink in the root node_modules), and the real
 * directories of the workspace packages those symlinks point at. bwrap re-binds
 * them read-only when they sit under a hidden path (a clone in $HOME or /tmp,
 * nvm under $HOME, an npx cache).
 */
export function runtimeDirs(): string[] {
  const nodePrefix = dirname(dirname(realpathSync(process.execPath)))
  const cliRoot = dirname(dirname(credproxyBinPath()))
  const dirs = [nodePrefix, cliRoot]
  for (let dir = cliRoot; ; dir = dirname(dir)) {
    const modules = join(dir, 'node_modules')
    if (existsSync(modules)) dirs.push(modules)
    if (dirname(dir) === dir) break
  }
  const require = createRequire(join(cliRoot, 'package.json'))
  try {
    dirs.push(packageRoot(realpathSync(require.resolve('@credproxy/core'))))
  } catch {
    // Not resolvable from here: the shim would fail the same way on the host.
  }
  return dirs
}

/** The nearest ancestor directory of file holding a package.json. */
function packageRoot(file: string): string {
  let dir = dirname(file)
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir)
  return dir
}
