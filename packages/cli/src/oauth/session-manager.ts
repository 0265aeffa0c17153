// Login sessions: each login runs as a host background task; the client polls a
// snapshot of it and never blocks. Ids are 128-bit random, single-use, bound to
// the broker session (owner) that started them, and expire.
import { randomBytes } from 'node:crypto'
import { ProxyError, type OAuthToken } from '@credproxy/core'
import type { InitiateOptions, OAuthInitiateResult, OAuthPollResult } from './broker.js'
import type { LoginFlow } from './login-flow.js'
import { escapeUntrusted } from '../escape.js'

/** A login the user has not finished within this time is dropped (ms). */
export const OAUTH_SESSION_TTL_MS = 10 * 60_000
/** Finished sessions stay this long (after expiry, or after cancel/collection) so a late poll gets a precise answer (ms). */
export const FINISHED_SESSION_RETENTION_MS = 60_000
/** Live plus recently finished sessions, across all owners. */
export const MAX_OAUTH_SESSIONS = 32
export const OAUTH_SESSION_SWEEP_INTERVAL_MS = 30_000
/** 128 bits. */
export const SESSION_ID_BYTES = 16
/** The window of the login rate limits below (ms). */
export const OAUTH_RATE_WINDOW_MS = 60_000
/** Logins (each one a request to the provider) one broker session may start per window. */
export const MAX_LOGINS_PER_OWNER = 10
/** Code exchanges (each one a token-endpoint request) per login per window. */
export const MAX_EXCHANGES_PER_LOGIN = 5
/** Provider-bound login work (starts plus exchanges) of all sessions together per window. */
export const MAX_PROVIDER_REQUESTS_PER_WINDOW = 60

export interface LoginRateLimits {
  windowMs: number
  loginsPerOwner: number
  exchangesPerLogin: number
  providerRequests: number
}

/** Requests within the last windowMs; take() answers null (go) or the seconds until one is free. */
class RateWindow {
  private readonly hits: number[] = []
  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
  ) {}

  /** Seconds to wait, or null when a request may go now (not counted until take()). */
  waitSeconds(now: number): number | null {
    while (this.hits.length > 0 && now - (this.hits[0] ?? 0) >= this.windowMs) this.hits.shift()
    if (this.hits.length < this.limit) return null
    return Math.max(1, Math.ceil(((this.hits[0] ?? now) + this.windowMs - now) / 1000))
  }

  take(now: number): void {
    this.hits.push(now)
  }

  idle(now: number): boolean {
    this.waitSeconds(now)
    return this.hits.length === 0
  }
}

/** RATE_LIMITED unless every window has room; then the request counts in all of them. */
function takeAll(windows: RateWindow[], now: number): void {
  const waits = windows.map((w) => w.waitSeconds(now)).filter((w): w is number => w !== null)
  if (waits.length > 0) throw new ProxyError('RATE_LIMITED', undefined, { retryAfter: Math.max(...waits) })
  for (const w of windows) w.take(now)
}

type SessionState =
  | { kind: 'pending' }
  | { kind: 'complete'; token: OAuthToken }
  | { kind: 'failed'; error: ProxyError }
  /** The token was handed out, or the session was cancelled: single-use. */
  | { kind: 'used' }

interface Session {
  id: string
  owner: string
  provider: string
  bucket: string
  expiresAt: number
  /** Set when the session is used up (cancelled or its token collected): it is forgotten then. */
  forgetAt?: number
  flow: LoginFlow
  state: SessionState
  /** Settles when the flow's token is stored (or the flow failed). */
  done: Promise<void>
  exchanges: RateWindow
}

export interface OAuthSessionManagerOptions {
  /** Start the provider's flow (the first HTTP round trip happens here). */
  startFlow: (provider: string, bucket: string, options: StartOptions) => Promise<LoginFlow>
  /** Store the token on the host; returns what was stored. A ProxyError it throws is the login's answer. */
  storeToken: (provider: string, bucket: string, token: OAuthToken, options: InitiateOptions) => Promise<OAuthToken>
  now?: () => number
  ttlMs?: number
  maxSessions?: number
  log?: (line: string) => void
  /** false: no sweep timer (tests call sweep()). */
  sweepTimer?: boolean
  /** Overrides of the login rate limits (tests of other rules). */
  rateLimits?: Partial<LoginRateLimits>
}

export interface StartOptions extends InitiateOptions {
  flow?: 'device_code' | 'pkce'
  openBrowser?: boolean
}

export class OAuthSessionManager {
  private readonly sessions = new Map<string, Session>()
  private readonly now: () => number
  private readonly ttlMs: number
  private readonly maxSessions: number
  private readonly log: (line: string) => void
  private readonly timer: NodeJS.Timeout | undefined
  private closed = false
  /** Initiates waiting on the provider: they hold a slot so concurrent ones cannot all reach the network. */
  private starting = 0
  private readonly limits: LoginRateLimits
  private readonly loginsByOwner = new Map<string, RateWindow>()
  private readonly providerRequests: RateWindow

  constructor(private readonly options: OAuthSessionManagerOptions) {
    this.now = options.now ?? Date.now
    this.ttlMs = options.ttlMs ?? OAUTH_SESSION_TTL_MS
    this.maxSessions = options.maxSessions ?? MAX_OAUTH_SESSIONS
    this.log = options.log ?? (() => undefined)
    this.limits = {
      windowMs: OAUTH_RATE_WINDOW_MS,
      loginsPerOwner: MAX_LOGINS_PER_OWNER,
      exchangesPerLogin: MAX_EXCHANGES_PER_LOGIN,
      providerRequests: MAX_PROVIDER_REQUESTS_PER_WINDOW,
      ...options.rateLimits,
    }
    this.providerRequests = new RateWindow(this.limits.providerRequests, this.limits.windowMs)
    if (options.sweepTimer !== false) {
      this.timer = setInterval(() => this.sweep(), OAUTH_SESSION_SWEEP_INTERVAL_MS)
      this.timer.unref()
    }
  }

  get size(): number {
    return this.sessions.size
  }

  async initiate(provider: string, bucket: string, owner: string, start: StartOptions = {}): Promise<OAuthInitiateResult> {
    if (this.closed) throw new ProxyError('FLOW_INITIATION_FAILED')
    this.sweep()
    if (this.sessions.size + this.starting >= this.maxSessions && !this.evictUsed()) throw new ProxyError('RESOURCE_EXHAUSTED')
    // Each login start is a request to the provider: bounded per broker session and host-wide.
    let logins = this.loginsByOwner.get(owner)
    if (logins === undefined) {
      logins = new RateWindow(this.limits.loginsPerOwner, this.limits.windowMs)
      this.loginsByOwner.set(owner, logins)
    }
    takeAll([logins, this.providerRequests], this.now())
    // Reserve the slot before the first await: the cap bounds the requests sent to the provider too.
    this.starting += 1
    let flow: LoginFlow
    try {
      flow = await this.options.startFlow(provider, bucket, start)
    } finally {
      this.starting -= 1
    }
    if (this.closed) {
      flow.abort()
      throw new ProxyError('FLOW_INITIATION_FAILED')
    }
    const id = randomBytes(SESSION_ID_BYTES).toString('base64url')
    const session: Session = {
      id,
      owner,
      provider,
      bucket,
      expiresAt: this.now() + this.ttlMs,
      flow,
      state: { kind: 'pending' },
      done: Promise.resolve(),
      exchanges: new RateWindow(this.limits.exchangesPerLogin, this.limits.windowMs),
    }
    session.done = flow.result.then(
      async (token) => {
        const stored = await this.options.storeToken(provider, bucket, token, start)
        if (session.state.kind === 'pending') session.state = { kind: 'complete', token: stored }
      },
      (error: unknown) => {
        if (session.state.kind !== 'pending') return
        session.state = { kind: 'failed', error: error instanceof ProxyError ? error : new ProxyError('POLL_FAILED', undefined, { cause: error }) }
      },
    ).catch((error: unknown) => {
      // Storing failed or was refused: the login worked but nothing was kept.
      this.log(`oauth ${provider}/${bucket}: storing the new token failed: ${escapeUntrusted((error as Error).message)}`)
      if (session.state.kind !== 'pending') return
      session.state = { kind: 'failed', error: error instanceof ProxyError ? error : new ProxyError('INTERNAL_ERROR') }
    })
    this.sessions.set(id, session)
    return { ...flow.display, session_id: id }
  }

  /** Never blocks: a snapshot of the background task. */
  poll(sessionId: string, owner: string): OAuthPollResult {
    const session = this.find(sessionId, owner)
    const state = session.state
    switch (state.kind) {
      case 'used':
        throw new ProxyError('SESSION_ALREADY_USED')
      case 'failed':
        throw state.error
      case 'complete':
        this.markUsed(session)
        return { status: 'complete', token: state.token }
      case 'pending': {
        const interval = session.flow.slowedDownInterval()
        return interval === undefined ? { status: 'pending' } : { status: 'pending', interval }
      }
    }
  }

  /** Paste-the-code completion: exchanges, stores, and hands the token out (single-use). */
  async exchange(sessionId: string, code: string, owner: string): Promise<OAuthToken> {
    const session = this.find(sessionId, owner)
    if (session.state.kind === 'used') throw new ProxyError('SESSION_ALREADY_USED')
    if (session.state.kind === 'pending') {
      // Each attempt is a token-endpoint request (with the client secret of a confidential client).
      takeAll([session.exchanges, this.providerRequests], this.now())
      await session.flow.exchange(code)
    }
    await session.done
    const state = session.state as SessionState
    if (state.kind === 'failed') throw state.error
    if (state.kind !== 'complete') throw new ProxyError('SESSION_ALREADY_USED')
    this.markUsed(session)
    return state.token
  }

  cancel(sessionId: string, owner: string): void {
    const session = this.find(sessionId, owner)
    session.flow.abort()
    this.markUsed(session)
  }

  /** Expire overdue logins (their tasks are aborted) and forget long-finished ones. */
  sweep(): void {
    const now = this.now()
    for (const [owner, window] of this.loginsByOwner) if (window.idle(now)) this.loginsByOwner.delete(owner)
    for (const [id, session] of this.sessions) {
      if (session.forgetAt !== undefined && now >= session.forgetAt) {
        this.sessions.delete(id)
        continue
      }
      if (now < session.expiresAt) continue
      if (session.state.kind === 'pending') {
        session.flow.abort()
        session.state = { kind: 'failed', error: new ProxyError('SESSION_EXPIRED') }
      }
      if (now >= session.expiresAt + FINISHED_SESSION_RETENTION_MS) this.sessions.delete(id)
    }
  }

  close(): void {
    this.closed = true
    if (this.timer !== undefined) clearInterval(this.timer)
    for (const session of this.sessions.values()) session.flow.abort()
    this.sessions.clear()
  }

  /** Single use: a used session keeps its slot only for the retention, not until its expiry. */
  private markUsed(session: Session): void {
    session.state = { kind: 'used' }
    session.forgetAt ??= Math.min(this.now() + FINISHED_SESSION_RETENTION_MS, session.expiresAt + FINISHED_SESSION_RETENTION_MS)
  }

  /** At the cap, a used session gives its slot to a new login early (its late poll then gets SESSION_NOT_FOUND). */
  private evictUsed(): boolean {
    let oldest: Session | undefined
    for (const session of this.sessions.values()) {
      if (session.forgetAt !== undefined && (oldest?.forgetAt === undefined || session.forgetAt < oldest.forgetAt)) oldest = session
    }
    if (oldest === undefined) return false
    this.sessions.delete(oldest.id)
    return true
  }

  /** Another owner's session is indistinguishable from a missing one. */
  private find(sessionId: string, owner: string): Session {
    const session = this.sessions.get(sessionId)
    if (session === undefined || session.owner !== owner) throw new ProxyError('SESSION_NOT_FOUND')
    if (this.now() >= session.expiresAt && session.state.kind === 'pending') {
      session.flow.abort()
      session.state = { kind: 'failed', error: new ProxyError('SESSION_EXPIRED') }
    }
    return session
  }
}
