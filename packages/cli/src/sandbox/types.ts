// What every sandbox backend receives and returns. Mount table and secret
// transport per backend: dev-docs/sandbox.md.
import type { EgressBridge } from './egress-bridge.js'

export type SandboxName = 'bwrap' | 'docker' | 'podman' | 'none'
export const SANDBOX_CHOICES = ['auto', 'bwrap', 'docker', 'podman', 'none'] as const
export type SandboxChoice = (typeof SANDBOX_CHOICES)[number]

/** Where the session socket directory appears inside every sandbox (bound read-only). */
export const SANDBOX_SOCKET_DIR = '/run/credproxy'
/** Where the generated `credproxy` shim directory appears inside (bound read-only, first on PATH). */
export const SANDBOX_BIN_DIR = '/run/credproxy-bin'
/** The inherited descriptor carrying the 64-hex session secret (spawn stdio index). */
export const SECRET_FD = 3
/** Where the secret is inside bwrap and containers: a 0400 file on the sandbox's own tmpfs, readable by every process in the sandbox. */
export const SANDBOX_SECRET_FILE = '/run/credproxy-secret/session-secret'
/** bwrap reads its seccomp program from this descriptor and closes it before the command starts. */
export const SECCOMP_FD = 4

export interface SandboxRequest {
  /** The command and its arguments, run inside. */
  command: readonly string[]
  /** Host working directory: bound read-write at the same path and made the working directory. */
  cwd: string
  /** The host environment: only an allowlist of it reaches the sandbox (sandbox-env.ts). */
  hostEnv: NodeJS.ProcessEnv
  /** Host path of the session directory holding the socket. */
  socketDir: string
  /** File name of the socket inside socketDir. */
  socketName: string
  /** Extra host paths bound read-write at the same path. */
  binds: readonly string[]
  allowNetwork: boolean
  /** Host paths that must not be visible inside (credproxy data/state/config/runtime dirs). */
  hiddenPaths: readonly string[]
  /** Host directory holding the generated `credproxy` shim. */
  shimDir: string
  /** Host directories of the credproxy install (packages, node_modules): bwrap binds them read-only when hidden, containers always. */
  runtimeDirs: readonly string[]
  /** The host node binary (and a shared libnode): bwrap binds these files read-only when hidden; containers use the image's node. */
  nodeFiles: readonly string[]
  /** The session's egress proxy: env for inside, and (without a network) the forwarder to start first. */
  egress?: EgressBridge
  /** Container image (docker/podman only). */
  image?: string
  /** `run --legacy-clients`: also set what llxprt-code's inner client reads (sandbox-env.ts addLegacyClientEnv). */
  legacyClients?: boolean
}

/** A ready-to-spawn command line. `fds[i]` reaches the child as fd 3+i (an unlinked private file, see inherited-fd.ts). */
export interface LaunchPlan {
  backend: SandboxName
  file: string
  args: string[]
  env: Record<string, string>
  fds: Uint8Array[]
  /** Host paths the launcher creates as mount points (bwrap: missing host-executed files); removed after the run while empty. */
  mountpoints?: string[]
}
