// The `credproxy` command inside a sandbox: a two-line script in a private host
// directory, bound read-only first on PATH, that runs this very installation.
import { existsSync, lstatSync, readdirSync, readFileSync, realpathSync } from 'node:fs'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { isWithin } from './within.js'

/** The empty read-only file in the shim directory that a missing host-executed file is replaced with. */
export const EMPTY_FILE_NAME = '.empty'

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
  // What bwrap binds read-only over a missing host-executed file in cwd (bwrap.ts protectHostExecuted).
  await writeFile(join(dir, EMPTY_FILE_NAME), '', { mode: 0o444 })
  await chmod(dir, 0o755)
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) }
}

/** The node binary this process runs, symlinks resolved: what the bwrap and none shims execute. */
export function nodeBinary(execPath: string = process.execPath): string {
  return realpathSync(execPath)
}

/**
 * Host files node itself needs inside bwrap: its binary, plus any shared library
 * it mapped from its own prefix (a shared libnode) with the symlinks naming it.
 * Files, never the prefix: with n (N_PREFIX=$HOME) or ~/.local/bin/node the prefix
 * is $HOME or holds credproxy's data dir. Official builds link libnode statically.
 */
export function nodeFiles(execPath: string = process.execPath, mapped: readonly string[] = mappedLibraries()): string[] {
  const binary = nodeBinary(execPath)
  const prefix = dirname(dirname(binary))
  const files = [binary]
  // With node in /usr/bin the prefix is /usr: each library's directory holds ~1000 entries.
  // List each directory once, by name; stat only the names that could be a link to the library.
  const listings = new Map<string, string[]>()
  for (const lib of new Set(mapped)) {
    if (!isWithin(lib, prefix) || !existsSync(lib)) continue
    files.push(lib)
    // The loader opens libnode.so.N, a symlink; the kernel reports the file by its target's name.
    const stem = basename(lib).slice(0, basename(lib).indexOf('.so') + 3)
    const dir = dirname(lib)
    let names = listings.get(dir)
    if (names === undefined) listings.set(dir, (names = readdirSync(dir)))
    for (const name of names) {
      if (!name.startsWith(stem)) continue
      const link = join(dir, name)
      if (isSymbolicLink(link) && resolvesTo(link, lib)) files.push(link)
    }
  }
  return files
}

function isSymbolicLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink()
  } catch {
    return false // gone since the listing
  }
}

function resolvesTo(link: string, target: string): boolean {
  try {
    return realpathSync(link) === target
  } catch {
    return false // a dangling link
  }
}

/** Shared libraries mapped into this process (Linux /proc/self/maps; none elsewhere). */
function mappedLibraries(): string[] {
  let maps: string
  try {
    maps = readFileSync('/proc/self/maps', 'utf8')
  } catch {
    return []
  }
  const libs = new Set<string>()
  for (const line of maps.split('\n')) {
    const path = line.slice(line.indexOf('/'))
    if (line.includes('/') && /\.so(\.\d+)*$/.test(path)) libs.add(path)
  }
  return [...libs]
}

/**
 * Host directories the shim needs besides node: this package, every
 * node_modules directory Node searches from it (an npm workspace resolves
 * `@credproxy/core` through a symlink in the root node_modules), and the real
 * directories of the workspace packages those symlinks point at. bwrap re-binds
 * them read-only when they sit under a hidden path (a clone in $HOME or /tmp,
 * an npx cache); containers mount them all.
 */
export function runtimeDirs(): string[] {
  const cliRoot = dirname(dirname(credproxyBinPath()))
  const dirs = [cliRoot]
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
