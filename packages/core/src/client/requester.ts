// The one method the proxy stores need from a client; lets embedders wrap or share one.
import type { OpData, OpName, OpPayload } from '../protocol/messages.js'
import type { RequestOptions } from './socket-client.js'

export interface ProxyRequester {
  request<O extends OpName>(op: O, payload: OpPayload<O>, options?: RequestOptions): Promise<OpData<O>>
}
