// Protocol versions and the version each op needs: plain constants (no zod), so the
// sandbox-side client can load them without the schemas in messages.ts.
import type { OpName } from './messages.js'

export const MIN_PROTOCOL_VERSION = 1
export const MAX_PROTOCOL_VERSION = 3
/** Highest version a legacy (bearer-token) client can negotiate. */
export const MAX_LEGACY_PROTOCOL_VERSION = 2

/** The lowest protocol version in which each op exists. */
export const OP_MIN_VERSION: Record<OpName, number> = {
  get_token: 1,
  save_token: 1,
  remove_token: 1,
  list_providers: 1,
  list_buckets: 1,
  get_bucket_stats: 1,
  get_api_key: 1,
  list_api_keys: 1,
  has_api_key: 1,
  oauth_initiate: 1,
  oauth_exchange: 1,
  oauth_poll: 1,
  oauth_cancel: 1,
  refresh_token: 1,
  cancel: 2,
  session_info: 3,
}
