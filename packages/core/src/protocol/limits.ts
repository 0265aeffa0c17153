// Limits both sides must agree on. Server-only limits (rate, connections, OAuth
// sessions) live with the server; dev-docs/protocol.md "Limits" lists them all.

/** Requests one connection may have unanswered at once (`cancel` is exempt); the server reads no more until one is answered. */
export const MAX_IN_FLIGHT_REQUESTS = 16
