// Public API of @credproxy/cli for embedders: host-aware factories, host stores,
// the broker server and its security parts, OAuth, sandbox launchers.
export { main, VERSION } from './cli.js'
export { resolvePaths, type CredproxyPaths } from './paths.js'
export { createTokenStore, createProviderKeyStorage, type HostFactoryOptions } from './factories.js'

export { CredproxyError, CREDPROXY_ERROR_CODES, UsageError, type CredproxyErrorCode } from './errors.js'
export { openHostStores, LockLostError, LockTimeoutError, type OpenHostStoresOptions } from './storage/index.js'
export type { HostStores, HostTokenStore, BackendName } from './storage/types.js'

export {
  CredentialProxyServer,
  type CredentialProxyServerOptions,
  type StartedServer,
  type PeerSummary,
} from './broker/credential-proxy-server.js'
export {
  SessionGrants,
  parseProviderGrant,
  GrantSetSchema,
  type GrantSet,
  type GrantChange,
  type Capability,
  type ProviderGrant,
} from './broker/grants.js'
export { DEFAULT_SERVER_LIMITS, type ServerLimits } from './broker/limits.js'
export type { AuditEntry, AuditSink, PeerCheck, PeerDecision, PeerInfo } from './broker/hooks.js'
export { createPeerCheck, readPeerCredentials, type PeerCheckOptions } from './broker/peer-credentials.js'
export { auditLogPath, type AuditLine } from './audit/audit-format.js'
export { readAuditEntries } from './audit/audit-reader.js'
export { AuditLog } from './audit/audit-writer.js'
export { startControlChannel, type ControlChannel } from './control/control-channel.js'
export { listSessions, type SessionRecord } from './control/session-registry.js'
export { writeSessionSecretFile } from './broker/session-secret-file.js'

export type { OAuthBroker, OAuthInitiateResult, OAuthPollResult, FlowType } from './oauth/broker.js'
export { HostOAuthBroker } from './oauth/host-oauth-broker.js'
export { createOAuthBroker, type CreateOAuthBrokerOptions, type HostOAuth } from './credentials/host-oauth.js'
export type { CredentialSource, CredentialUsage } from './credentials/credential-source.js'
export { StoredCredentialSource } from './credentials/stored-credential-source.js'
export { RefreshingCredentialSource } from './credentials/refreshing-credential-source.js'
export { startHostSession, type HostSession, type HostSessionOptions } from './session/host-session.js'
export { loadProvidersConfig, type ProviderConfig, type ProvidersConfig } from './oauth/provider-config.js'
export { RefreshCoordinator } from './oauth/refresh-coordinator.js'
export { ProactiveScheduler } from './oauth/proactive-scheduler.js'
export { OAuthSessionManager } from './oauth/session-manager.js'

export { runCommand, type RunOptions } from './commands/run.js'
export { selectSandbox, prepareLaunch } from './sandbox/select.js'
export { spawnSandbox } from './sandbox/launch.js'
export { buildBwrapArgs } from './sandbox/bwrap.js'
