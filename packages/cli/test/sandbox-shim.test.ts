// The `credproxy` command inside a sandbox runs this installation. When the
// checkout sits under a directory the sandbox hides ($HOME, /tmp), every
// directory Node resolves credproxy's dependencies from must be re-bound, or
// `credproxy` inside fails with ERR_MODULE_NOT_FOUND.
import { spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, test } from 'vitest'
import { credproxyBinPath, nodeFiles, runtimeDirs } from '../src/sandbox/shim.js'

const repoRoot = resolve(fileURLToPath(new URL('../../..', import.meta.url)))

describe('runtimeDirs', () => {
  test('includes the workspace node_modules and the real directory of @credproxy/core', () => {
    const dirs = runtimeDirs()
    expect(dirs).toContain(join(repoRoot, 'node_modules'))
    expect(dirs).toContain(realpathSync(join(repoRoot, 'packages', 'core')))
    expect(dirs).toContain(realpathSync(join(repoRoot, 'packages', 'cli')))
    for (const dir of dirs) expect(existsSync(dir)).toBe(true)
  })

  test('names no node prefix: node is bound as files (nodeFiles), never as its install directory', () => {
    expect(runtimeDirs()).not.toContain(resolve(realpathSync(process.execPath), '../..'))
  })

  test('the shim target is this installation', () => {
    expect(credproxyBinPath()).toBe(realpathSync(join(repoRoot, 'packages', 'cli', 'bin', 'credproxy.js')))
  })
})

describe('nodeFiles', () => {
  test('the real node binary, plus a shared libnode from its prefix and the symlink the loader opens', () => {
    const prefix = realpathSync(mkdtempSync(join(tmpdir(), 'cp-node-')))
    try {
      mkdirSync(join(prefix, 'bin'))
      mkdirSync(join(prefix, 'lib'))
      writeFileSync(join(prefix, 'bin', 'node'), '')
      symlinkSync(join(prefix, 'bin', 'node'), join(prefix, 'node-link'))
      const lib = join(prefix, 'lib', 'libnode.so.127.0.0')
      writeFileSync(lib, '')
      symlinkSync('libnode.so.127.0.0', join(prefix, 'lib', 'libnode.so.127'))
      writeFileSync(join(prefix, 'lib', 'unrelated.txt'), '')
      expect(nodeFiles(join(prefix, 'node-link'), [lib, '/usr/lib/x86_64-linux-gnu/libc.so.6']).sort()).toEqual(
        [join(prefix, 'bin', 'node'), lib, join(prefix, 'lib', 'libnode.so.127')].sort(),
      )
    } finally {
      rmSync(prefix, { recursive: true, force: true })
    }
  })

  test('two libraries in one directory: each gets only its own links; a plain file with the same stem is no link', () => {
    const prefix = realpathSync(mkdtempSync(join(tmpdir(), 'cp-node-')))
    try {
      mkdirSync(join(prefix, 'bin'))
      mkdirSync(join(prefix, 'lib'))
      writeFileSync(join(prefix, 'bin', 'node'), '')
      const libnode = join(prefix, 'lib', 'libnode.so.127.0.0')
      const libuv = join(prefix, 'lib', 'libuv.so.1.0.0')
      for (const lib of [libnode, libuv]) writeFileSync(lib, '')
      symlinkSync('libnode.so.127.0.0', join(prefix, 'lib', 'libnode.so.127'))
      symlinkSync('libuv.so.1.0.0', join(prefix, 'lib', 'libuv.so.1'))
      symlinkSync('libuv.so.1.0.0', join(prefix, 'lib', 'libnode.so.wrong'))
      writeFileSync(join(prefix, 'lib', 'libnode.so'), '')
      expect(nodeFiles(join(prefix, 'bin', 'node'), [libnode, libuv]).sort()).toEqual(
        [join(prefix, 'bin', 'node'), libnode, join(prefix, 'lib', 'libnode.so.127'), libuv, join(prefix, 'lib', 'libuv.so.1')].sort(),
      )
    } finally {
      rmSync(prefix, { recursive: true, force: true })
    }
  })
})

describe('credproxy inside a sandbox that hides the checkout', () => {
  test('runs when HOME is the checkout itself (the sandbox puts a tmpfs over HOME)', () => {
    const scratch = mkdtempSync(join(tmpdir(), 'cp-shim-'))
    try {
      // A cwd beside CREDPROXY_HOME, not above it (that is refused).
      mkdirSync(join(scratch, 'project'))
      const result = spawnSync(
        process.execPath,
        [join(repoRoot, 'packages/cli/bin/credproxy.js'), 'run', '--sandbox', 'bwrap', '--', 'credproxy', '--version'],
        {
          cwd: join(scratch, 'project'),
          env: { PATH: process.env['PATH'], HOME: repoRoot, CREDPROXY_HOME: join(scratch, 'home'), CREDPROXY_KEYRING: 'off' },
          encoding: 'utf8',
          timeout: 30_000,
        },
      )
      expect(result.stderr).not.toContain('ERR_MODULE_NOT_FOUND')
      expect(result.stdout.trim()).toBe('0.1.0')
      expect(result.status).toBe(0)
    } finally {
      rmSync(scratch, { recursive: true, force: true })
    }
  })

  // n with N_PREFIX=$HOME puts node at ~/bin/node: its prefix is the home itself.
  test('node installed at $HOME/bin/node runs inside, and the rest of that HOME stays hidden', () => {
    const scratch = realpathSync(mkdtempSync(join(tmpdir(), 'cp-shim-')))
    try {
      const home = join(scratch, 'home')
      mkdirSync(join(home, '.ssh'), { recursive: true })
      writeFileSync(join(home, '.ssh', 'id_test'), 'PRIVATE-KEY-MATERIAL\n')
      mkdirSync(join(home, 'bin'))
      const node = join(home, 'bin', 'node')
      try {
        linkSync(realpathSync(process.execPath), node)
      } catch {
        copyFileSync(realpathSync(process.execPath), node)
      }
      const project = join(scratch, 'project')
      mkdirSync(project)
      const script = 'cat "$HOME/.ssh/id_test"; ls "$HOME"; credproxy --version'
      const result = spawnSync(
        node,
        [join(repoRoot, 'packages/cli/bin/credproxy.js'), 'run', '--sandbox', 'bwrap', '--', 'sh', '-c', script],
        {
          cwd: project,
          env: { PATH: process.env['PATH'], HOME: home, CREDPROXY_HOME: join(scratch, 'cp-home'), CREDPROXY_KEYRING: 'off' },
          encoding: 'utf8',
          timeout: 30_000,
        },
      )
      expect(result.stdout).not.toContain('PRIVATE-KEY-MATERIAL')
      expect(result.stderr).toContain('id_test: No such file or directory')
      // Only bin/ (holding just the node binary) shows in the home; credproxy inside ran on that node.
      expect(result.stdout.trim().split('\n')).toEqual(['bin', '0.1.0'])
      expect(result.status).toBe(0)
    } finally {
      rmSync(scratch, { recursive: true, force: true })
    }
  })
})
