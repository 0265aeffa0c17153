// Apart from refresh-coordinator.ts so `credproxy token` on the host can tell, without
// loading the OAuth broker, that a stored token needs no refresh.
/** get_token refreshes a token with less than this left (seconds); the scheduler acts much earlier. */
export const REFRESH_MARGIN_SECONDS = 30
