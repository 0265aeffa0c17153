// Lets the host command drive its own broker with the same ProxyOAuthAdapter the
// sandbox uses (same loop, same output), without a socket.
import { ProxyError, sanitizeTokenForProxy, type OpData, type OpName, type OpPayload, type ProxyRequester } from '@credproxy/core'
import type { HostOAuthBroker } from './host-oauth-broker.js'
import type { StartOptions } from './session-manager.js'

export const LOCAL_OWNER = 'host-cli'

export function createLocalRequester(broker: HostOAuthBroker, start: StartOptions): ProxyRequester {
  const handlers: Partial<Record<OpName, (payload: never) => Promise<unknown>>> = {
    oauth_initiate: async (p: OpPayload<'oauth_initiate'>) => broker.initiate(p.provider, p.bucket ?? 'default', LOCAL_OWNER, start),
    oauth_poll: async (p: OpPayload<'oauth_poll'>) => {
      const r = await broker.poll(p.session_id, LOCAL_OWNER)
      return r.status === 'complete' ? { status: 'complete', token: sanitizeTokenForProxy(r.token) } : r
    },
    oauth_exchange: async (p: OpPayload<'oauth_exchange'>) =>
      sanitizeTokenForProxy(await broker.exchange(p.session_id, p.code, LOCAL_OWNER)),
    oauth_cancel: async (p: OpPayload<'oauth_cancel'>) => {
      await broker.cancel(p.session_id, LOCAL_OWNER)
      return {}
    },
  }
  return {
    async request<O extends OpName>(op: O, payload: OpPayload<O>): Promise<OpData<O>> {
      const handler = handlers[op]
      if (handler === undefined) throw new ProxyError('INVALID_REQUEST', `${op} is not available in a host login`)
      return (await handler(payload as never)) as OpData<O>
    },
  }
}
