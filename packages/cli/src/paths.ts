// Where credproxy keeps things. $CREDPROXY_HOME puts everything under one
// directory (tests, portable setups); otherwise the XDG base directories.
import { homedir } from 'node:os'
import { join } from 'node:path'

/** OAuth providers in <configDir> (oauth/provider-config.ts reads it; here so callers can look without loading the parser). */
export const PROVIDERS_FILE_NAME = 'providers.json'
/** Credential sources in <configDir> (credentials/sources-config.ts reads it). */
export const SOURCES_FILE_NAME = 'sources.json'

export interface CredproxyPaths {
  /** Encrypted credential files, the machine-secret file. */
  dataDir: string
  /** Audit log, lock files, session registry. */
  stateDir: string
  /** providers.json and other user configuration. */
  configDir: string
  /** Per-session broker directories (sockets); short to respect the 108-byte socket path limit. */
  runtimeDir: string
}

export function resolvePaths(env: NodeJS.ProcessEnv = process.env): CredproxyPaths {
  const home = env['CREDPROXY_HOME']
  if (home !== undefined && home !== '') {
    return {
      dataDir: join(home, 'data'),
      stateDir: join(home, 'state'),
      configDir: join(home, 'config'),
      runtimeDir: join(home, 'run'),
    }
  }
  const userHome = env['HOME'] ?? homedir()
  const xdg = (name: string, fallback: string): string => {
    const value = env[name]
    return value !== undefined && value.startsWith('/') ? value : join(userHome, fallback)
  }
  const runtime = env['XDG_RUNTIME_DIR']
  const stateDir = join(xdg('XDG_STATE_HOME', '.local/state'), 'credproxy')
  return {
    dataDir: join(xdg('XDG_DATA_HOME', '.local/share'), 'credproxy'),
    stateDir,
    configDir: join(xdg('XDG_CONFIG_HOME', '.config'), 'credproxy'),
    // Without XDG_RUNTIME_DIR: under the user's own state dir, never a name in the shared
    // /tmp that another user could create first and so block every run and serve.
    runtimeDir: runtime !== undefined && runtime.startsWith('/') ? join(runtime, 'credproxy') : join(stateDir, 'run'),
  }
}
