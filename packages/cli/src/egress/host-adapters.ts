// Adapters from the host's existing machinery to the egress proxy: the key store
// and the OAuth broker as EgressCredentials (read at request time, never cached, so
// a rotated key or refreshed token reaches running sessions on the next request),
// and the audit log as the proxy's audit sink.
import type { ProviderKeyStorage } from '@credproxy/core'
import type { OAuthBroker } from '../oauth/broker.js'
import type { AuditSink } from '../server/hooks.js'
import type { EgressAuditEvent, EgressCredentials } from './types.js'

export function hostEgressCredentials(stores: { keys: Pick<ProviderKeyStorage, 'getKey'> }, oauthBroker: Pick<OAuthBroker, 'getFreshToken' | 'refresh'> | null): EgressCredentials {
  return {
    apiKey: (name) => stores.keys.getKey(name),
    async accessToken(provider, bucket, options = {}) {
      if (oauthBroker === null) return null
      // getFreshToken refreshes near expiry (one refresh for concurrent callers); refresh() after an upstream 401.
      const token = options.forceRefresh === true ? await oauthBroker.refresh(provider, bucket) : await oauthBroker.getFreshToken(provider, bucket)
      return token?.access_token ?? null
    },
  }
}

/** The outcome code an egress line carries: 'ok' for anything the proxy forwarded, else why it refused. */
function egressOutcome(event: EgressAuditEvent): 'ok' | 'FORBIDDEN' | 'UNAUTHORIZED' | 'RATE_LIMITED' | 'INVALID_REQUEST' | 'INTERNAL_ERROR' {
  if (event.reason === undefined) return 'ok'
  if (event.status === 407) return 'UNAUTHORIZED'
  if (event.status === 429) return 'RATE_LIMITED'
  if (event.status === 400 || event.status === 404 || event.status === 405) return 'INVALID_REQUEST'
  if (event.status >= 500) return 'INTERNAL_ERROR'
  return 'FORBIDDEN'
}

export function egressAuditSink(sink: AuditSink): (event: EgressAuditEvent) => void {
  return (event) => {
    sink.write({
      session: event.session,
      event: 'egress',
      outcome: egressOutcome(event),
      durationMs: event.durationMs,
      ...(event.reason === undefined ? {} : { reason: event.reason }),
      egress: {
        ...(event.rule === undefined ? {} : { rule: event.rule }),
        method: event.method,
        host: event.host,
        path: event.path,
        status: event.status,
        bytesIn: event.bytesIn,
        bytesOut: event.bytesOut,
        injected: event.injected,
      },
    })
  }
}
