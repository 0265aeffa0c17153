// Adapters from the host session to the egress proxy: the session's one credential
// source as EgressCredentials (read at request time, never cached, so a rotated key
// or refreshed token reaches running sessions on the next request), and the audit
// log as the proxy's audit sink.
import type { AuditSink } from '../broker/hooks.js'
import { AUDIT_INVALID_VALUE } from '../audit/audit-format.js'
import type { CredentialSource } from '../credentials/credential-source.js'
import type { EgressAuditEvent, EgressCredentials } from './types.js'

/** The same door the socket broker uses: a near-expiry token is refreshed on the host, a 401 forces one refresh. */
export function hostEgressCredentials(source: Pick<CredentialSource, 'apiKey' | 'accessToken'>): EgressCredentials {
  return {
    apiKey: (name) => source.apiKey(name),
    async accessToken(provider, bucket, options = {}) {
      const token = await source.accessToken(provider, bucket, options)
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

/** Longest free-text egress field kept (characters); a longer one is written as <invalid> (the log line stays small). */
export const MAX_EGRESS_AUDIT_FIELD_CHARS = 256

function capped(value: string): string {
  return value.length > MAX_EGRESS_AUDIT_FIELD_CHARS ? AUDIT_INVALID_VALUE : value
}

export function egressAuditSink(sink: AuditSink): (event: EgressAuditEvent) => void {
  return (event) => {
    sink.write({
      session: event.session,
      event: 'egress',
      outcome: egressOutcome(event),
      durationMs: event.durationMs,
      ...(event.reason === undefined ? {} : { reason: capped(event.reason) }),
      egress: {
        ...(event.rule === undefined ? {} : { rule: event.rule }),
        method: capped(event.method),
        host: capped(event.host),
        path: capped(event.path),
        status: event.status,
        bytesIn: event.bytesIn,
        bytesOut: event.bytesOut,
        injected: event.injected,
      },
    })
  }
}
