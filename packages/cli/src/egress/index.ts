// The egress proxy's public door: named re-exports only.
export { startEgressProxy, MAX_REPLAY_BODY_BYTES } from './proxy.js'
export { loadEgressRules, parseEgressRules, presetRules, EgressRuleSchema, EGRESS_FILE_NAME, type EgressRule, type EgressRuleInput } from './rules.js'
export { EGRESS_PRESETS } from './presets.js'
export { hostEgressCredentials, egressAuditSink } from './host-adapters.js'
export type { EgressAuditEvent, EgressCredentials, EgressProxy, EgressProxyOptions } from './types.js'
