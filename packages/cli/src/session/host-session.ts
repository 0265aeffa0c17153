// One host session, assembled once: prune what a killed predecessor left, open the
// stores, the credential source and OAuth logins, the audit log, the broker socket,
// the secret file (serve) and the control channel. `credproxy run`, `credproxy serve`
// (and the demo, through run) use it; the egress proxy attaches to the same handle.
// close() undoes everything in reverse order, attempting every step.
import { stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { auditLogPath } from '../audit/audit-format.js'
import { AuditBudget } from '../audit/audit-budget.js'
import { AuditLog } from '../audit/audit-writer.js'
import { CredentialProxyServer, type PeerSummary } from '../broker/credential-proxy-server.js'
import type { GrantSet, SessionGrants } from '../broker/grants.js'
import type { AuditSink } from '../broker/hooks.js'
import { createPeerCheck } from '../broker/peer-credentials.js'
import { writeSessionSecretFile } from '../broker/session-secret-file.js'
import { startControlChannel } from '../control/control-channel.js'
import { pruneStaleSessions } from '../control/stale-sessions.js'
import type { HostOAuth } from '../credentials/host-oauth.js'
import { PROVIDERS_FILE_NAME, resolvePaths, SOURCES_FILE_NAME, type CredproxyPaths } from '../paths.js'
import { openHostStores } from '../storage/index.js'
import type { HostStores } from '../storage/types.js'
import { NO_SANDBOX_PID } from '../sandbox/launch.js'
import type { CredentialSource } from '../credentials/credential-source.js'
import { StoredCredentialSource } from '../credentials/stored-credential-source.js'

export interface HostSessionOptions {
  env: NodeJS.ProcessEnv
  paths?: CredproxyPaths
  grants: GrantSet
  /** The sandboxed command line for the session registry (only argv[0] is recorded). */
  command: readonly string[]
  /** Broker log lines (never a secret). */
  log: (line: string) => void
  /** Where the stores report (backend choice, migrations): the user's stderr. Default: log. */
  storeLog?: (line: string) => void
  /** A failed clean-up step (default: log `cleanup failed: ...`). */
  onCleanupError?: (error: unknown) => void
  /** Stores the caller opened and closes itself; otherwise the session opens and closes its own. */
  stores?: HostStores
  openStores?: (paths: CredproxyPaths, log: (line: string) => void) => Promise<HostStores>
  /** null: no OAuth configuration (default: providers.json decides). */
  createOAuth?: (stores: HostStores, paths: CredproxyPaths, log: (line: string) => void) => Promise<HostOAuth | null>
  /** Explicit broker socket path; default <runtimeDir>/<sessionId>/broker.sock. */
  socketPath?: string
  allowLegacyClients?: boolean
  legacyToken?: string
  /**
   * true (run): the peer check admits only processes inside the sandbox whose pids
   * attachSandbox() supplies, none before; the control channel refuses them.
   * false (serve): any peer of the user's uid.
   */
  sandboxed: boolean
  /** Wraps the audit log (run tells the user what a refused request needed). */
  wrapAudit?: (log: AuditSink, sessionId: () => string) => AuditSink
  /** Write the session secret to this NEW 0600 file; removed on close. */
  secretFile?: string
}

export interface HostSession {
  readonly sessionId: string
  readonly socketPath: string
  readonly secret: Buffer
  /** Live grants: the control channel changes them while the session runs. */
  readonly grants: SessionGrants
  /**
   * The one door to credentials (stored-only, or OAuth-refreshing with providers.json).
   * It satisfies the egress proxy's EgressCredentials shape (apiKey, accessToken).
   */
  readonly credentials: CredentialSource
  /**
   * The audit sink for the session's other doors (the egress proxy): the same log `credproxy audit`
   * reads, behind a flood budget of its own like the broker's (audit-budget.ts), so a flood through
   * one door cannot push the other's lines out.
   */
  readonly audit: AuditSink
  readonly paths: CredproxyPaths
  /** Connected broker peers. */
  peers(): PeerSummary[]
  /** Run: the sandbox now exists; its pids admit peers (and keep them off the control channel). */
  attachSandbox(pids: () => readonly number[]): void
  /** Idempotent; reverse order of assembly; every step attempted, failures reported to onCleanupError. */
  close(): Promise<void>
}

/** The one case the config loaders read as "not configured": nothing at that path (other errors are theirs to raise). */
async function configFileMissing(paths: CredproxyPaths, name: string): Promise<boolean> {
  return stat(join(paths.configDir, name)).then(
    () => false,
    (error: unknown) => (error as NodeJS.ErrnoException).code === 'ENOENT',
  )
}

/**
 * Host OAuth when providers.json exists. Without one (most sessions) the OAuth code and
 * its config parser stay unloaded; a file that exists is read (and its errors raised) as before.
 */
async function createOAuthIfConfigured(stores: HostStores, paths: CredproxyPaths, env: NodeJS.ProcessEnv, log: (line: string) => void): Promise<HostOAuth | null> {
  if (await configFileMissing(paths, PROVIDERS_FILE_NAME)) return null
  const { createOAuthBroker } = await import('../credentials/host-oauth.js')
  return createOAuthBroker({ stores, paths, env, log })
}

/** Assemble a host session; on failure, whatever was built is closed again before the error propagates. */
export async function startHostSession(options: HostSessionOptions): Promise<HostSession> {
  const paths = options.paths ?? resolvePaths(options.env)
  const { log } = options
  const onCleanupError = options.onCleanupError ?? ((error: unknown) => log(`cleanup failed: ${String(error)}`))
  const cleanups: Array<() => Promise<unknown>> = []
  let closed: Promise<void> | undefined
  const close = (): Promise<void> =>
    (closed ??= (async () => {
      for (const cleanup of cleanups.reverse()) {
        await cleanup().catch(onCleanupError)
      }
    })())

  let sandboxPids: (() => readonly number[]) | undefined
  try {
    // A credproxy killed with SIGKILL could not clean up; its successor does.
    await pruneStaleSessions(paths, (path) => log(`removed stale ${path}`), options.env)
    const storeLog = options.storeLog ?? log
    const stores =
      options.stores ??
      (await (options.openStores ?? ((p, l) => openHostStores({ env: options.env, paths: p, log: l })))(paths, storeLog))
    // Registered first, so it runs last: after the server stopped, its usage counts are written.
    if (options.stores === undefined) cleanups.push(async () => stores.tokens.close?.())
    // null when no providers.json exists: logins then answer PROVIDER_NOT_CONFIGURED.
    const oauth = await (options.createOAuth ?? ((s, p, l) => createOAuthIfConfigured(s, p, options.env, l)))(
      stores,
      paths,
      log,
    )
    if (oauth !== null) cleanups.push(() => oauth.close())
    const stored: CredentialSource = oauth?.credentials ?? new StoredCredentialSource(stores)
    const auditLog = await AuditLog.open(auditLogPath(paths), { log })
    cleanups.push(() => auditLog.close())
    let sessionId = ''
    const audit = options.wrapAudit === undefined ? auditLog : options.wrapAudit(auditLog, () => sessionId)
    // sources.json: names served by host commands, variables or files (credentials/sources-config.ts).
    // The session's doors (source runs the sandbox can trigger, the egress proxy) write behind one flood budget.
    const doorAudit = new AuditBudget(audit)
    // Runs before the log closes (cleanups run in reverse): the last summaries are written.
    cleanups.push(async () => doorAudit.flush())
    // Its code (and parser) loads only when sources.json exists, as OAuth's does.
    let credentials = stored
    if (!(await configFileMissing(paths, SOURCES_FILE_NAME))) {
      const { SourcedCredentialSource, withCredentialSources } = await import('../credentials/sourced-credential-source.js')
      const sourced = await withCredentialSources(stored, { paths, env: options.env, log, audit: doorAudit, session: () => sessionId })
      // After the server stops: a source command still running is killed (the inner source closes with OAuth).
      if (sourced instanceof SourcedCredentialSource) cleanups.push(async () => sourced.stopSources())
      credentials = sourced
    }
    const server = new CredentialProxyServer({
      stores,
      credentials,
      ...(oauth === null ? {} : { oauth: oauth.logins }),
      ...(options.socketPath === undefined ? { runtimeDir: paths.runtimeDir } : { socketPath: options.socketPath }),
      grants: options.grants,
      ...(options.allowLegacyClients === true ? { allowLegacyClients: true } : {}),
      ...(options.legacyToken === undefined ? {} : { legacyToken: options.legacyToken }),
      // Until the sandbox exists no peer descends from NO_SANDBOX_PID, so none is admitted.
      peerCheck: options.sandboxed
        ? createPeerCheck({ sandboxPids: () => sandboxPids?.() ?? [NO_SANDBOX_PID], log })
        : createPeerCheck({ log }),
      audit,
      log,
    })
    const started = await server.start()
    sessionId = started.sessionId
    cleanups.push(() => server.stop())
    if (options.secretFile !== undefined) {
      const secretFile = options.secretFile
      await writeSessionSecretFile(secretFile, started.secret)
      cleanups.push(() => unlink(secretFile).catch(() => undefined))
    }
    const control = await startControlChannel(
      { sessionId, grants: server.grants, socketPath: started.socketPath, peers: () => server.peers() },
      paths,
      {
        command: options.command,
        audit: auditLog,
        log,
        ...(options.sandboxed ? { sandboxPids: () => sandboxPids?.() ?? [] } : {}),
      },
    )
    cleanups.push(() => control.stop())
    return {
      sessionId,
      socketPath: started.socketPath,
      secret: started.secret,
      grants: server.grants,
      credentials,
      audit: doorAudit,
      paths,
      peers: () => server.peers(),
      attachSandbox(pids) {
        sandboxPids = pids
      },
      close,
    }
  } catch (error) {
    await close()
    throw error
  }
}
