// ProxyOAuthAdapter over a real Unix socket against the hand-written test peer
// (helpers/test-peer.ts) playing the host's OAuth session manager. The real host
// flows run against oidc-provider in @credproxy/cli's tests.
import { afterEach, describe, expect, test } from 'vitest'
import { ProxyError, ProxyOAuthAdapter, ProxySocketClient, type LoginUI, type VerificationInfo } from '../src/index.js'
import { TestPeer, TOKEN, type Frame, type PeerConnection } from './helpers/test-peer.js'

const SECRET = Buffer.alloc(32, 3)
const SESSION = 'sess_0123456789abcdef'
const HOST_TOKEN = { ...TOKEN, refresh_token: 'rt-never-leaves', id_token: 'idt' }

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

class RecordingUI implements LoginUI {
  verification: VerificationInfo[] = []
  progress: string[] = []
  showVerification(info: VerificationInfo): void {
    this.verification.push(info)
  }
  showProgress(text: string): void {
    this.progress.push(text)
  }
}

interface Poll {
  at: number
}

async function setup(onRequest: (r: Frame, c: PeerConnection) => void): Promise<{ peer: TestPeer; client: ProxySocketClient }> {
  const peer = await TestPeer.start({ secret: SECRET, onRequest })
  const client = new ProxySocketClient({ socketPath: peer.socketPath, secret: SECRET })
  cleanups.push(() => peer.close(), () => client.close())
  return { peer, client }
}

describe('device flow', () => {
  test('shows the code, polls at the host interval, slows down after slow_down, returns the sanitized token', async () => {
    const polls: Poll[] = []
    const { peer, client } = await setup((r, c) => {
      if (r['op'] === 'oauth_initiate') {
        c.reply(r, {
          flow_type: 'device_code',
          session_id: SESSION,
          pollIntervalMs: 250,
          verification_uri: 'https://auth.example/device',
          user_code: 'WDJB-MJHT',
          verification_uri_complete: 'https://auth.example/device?user_code=WDJB-MJHT',
        })
      } else if (r['op'] === 'oauth_poll') {
        polls.push({ at: performance.now() })
        if (polls.length === 1) c.reply(r, { status: 'pending' })
        else if (polls.length === 2) c.reply(r, { status: 'pending', interval: 1 }) // slow_down: 1 s
        else c.reply(r, { status: 'complete', token: HOST_TOKEN })
      }
    })
    const ui = new RecordingUI()
    const token = await new ProxyOAuthAdapter(client, ui).login('github', 'work')
    expect(token).toEqual({ ...TOKEN, id_token: 'idt' })
    expect(ui.verification).toEqual([
      {
        provider: 'github',
        bucket: 'work',
        flowType: 'device_code',
        verificationUri: 'https://auth.example/device',
        userCode: 'WDJB-MJHT',
        verificationUriComplete: 'https://auth.example/device?user_code=WDJB-MJHT',
      },
    ])
    expect(ui.progress.some((p) => p.includes('slow down'))).toBe(true)
    expect(peer.requests.map((r) => r['op'])).toEqual(['oauth_initiate', 'oauth_poll', 'oauth_poll', 'oauth_poll'])
    expect(peer.requests[0]?.['payload']).toEqual({ provider: 'github', bucket: 'work' })
    expect(peer.requests[1]?.['payload']).toEqual({ session_id: SESSION })
    // Never a hot loop: after slow_down the next poll waited the full second (timers never fire early by more than a tick).
    const [, second, third] = polls
    expect((third?.at ?? 0) - (second?.at ?? 0)).toBeGreaterThanOrEqual(990)
  })

  test('a denied login ends with ACCESS_DENIED', async () => {
    const { client } = await setup((r, c) => {
      if (r['op'] === 'oauth_initiate') c.reply(r, { flow_type: 'device_code', session_id: SESSION, pollIntervalMs: 0, user_code: 'X' })
      else c.fail(r, 'ACCESS_DENIED', 'The user denied the login.')
    })
    const error = (await new ProxyOAuthAdapter(client, new RecordingUI()).login('github').catch((e: unknown) => e)) as ProxyError
    expect(error.code).toBe('ACCESS_DENIED')
  })

  test('aborting sends oauth_cancel for the session and rejects with CANCELLED', async () => {
    const controller = new AbortController()
    const { peer, client } = await setup((r, c) => {
      if (r['op'] === 'oauth_initiate') c.reply(r, { flow_type: 'device_code', session_id: SESSION, pollIntervalMs: 250, user_code: 'X' })
      else if (r['op'] === 'oauth_poll') {
        c.reply(r, { status: 'pending' })
        controller.abort()
      } else c.reply(r, {})
    })
    const error = (await new ProxyOAuthAdapter(client, new RecordingUI())
      .login('github', undefined, { signal: controller.signal })
      .catch((e: unknown) => e)) as ProxyError
    expect(error.code).toBe('CANCELLED')
    expect(peer.requests.at(-1)).toMatchObject({ op: 'oauth_cancel', payload: { session_id: SESSION } })
  })
})

describe('redirect flows', () => {
  test('paste-the-code: shows auth_url, exchanges the pasted code, stops polling', async () => {
    const { peer, client } = await setup((r, c) => {
      if (r['op'] === 'oauth_initiate') c.reply(r, { flow_type: 'browser_redirect', session_id: SESSION, pollIntervalMs: 250, auth_url: 'https://auth.example/authorize?x=1' })
      else if (r['op'] === 'oauth_poll') c.reply(r, { status: 'pending' })
      else if (r['op'] === 'oauth_exchange') c.reply(r, HOST_TOKEN)
    })
    const ui = new RecordingUI()
    let prompted = 0
    const pasteUI: LoginUI = {
      showVerification: (info) => ui.showVerification(info),
      showProgress: (text) => ui.showProgress(text),
      promptForCode: async () => {
        prompted++
        return '  pasted-code \n'
      },
    }
    const token = await new ProxyOAuthAdapter(client, pasteUI).login('anthropic')
    expect(token).not.toHaveProperty('refresh_token')
    expect(token.access_token).toBe('at-1')
    expect(prompted).toBe(1)
    expect(ui.verification[0]).toEqual({ provider: 'anthropic', bucket: undefined, flowType: 'browser_redirect', authUrl: 'https://auth.example/authorize?x=1' })
    const exchange = peer.requests.find((r) => r['op'] === 'oauth_exchange')
    expect(exchange?.['payload']).toEqual({ session_id: SESSION, code: 'pasted-code' })
    expect(peer.requests.filter((r) => r['op'] === 'oauth_poll').length).toBeLessThanOrEqual(1)
  })

  test('pkce with a host loopback listener: polling completes it and the prompt is aborted', async () => {
    let polls = 0
    const { peer, client } = await setup((r, c) => {
      if (r['op'] === 'oauth_initiate') c.reply(r, { flow_type: 'pkce_redirect', session_id: SESSION, pollIntervalMs: 250, auth_url: 'https://auth.example/a' })
      else if (r['op'] === 'oauth_poll') c.reply(r, ++polls < 2 ? { status: 'pending' } : { status: 'complete', token: HOST_TOKEN })
    })
    let promptAborted = false
    const ui: LoginUI = {
      showVerification: () => undefined,
      showProgress: () => undefined,
      promptForCode: ({ signal }) =>
        new Promise((_resolve, reject) => {
          signal.addEventListener('abort', () => {
            promptAborted = true
            reject(new Error('prompt aborted'))
          })
        }),
    }
    const token = await new ProxyOAuthAdapter(client, ui).login('anthropic')
    expect(token).toEqual({ ...TOKEN, id_token: 'idt' })
    expect(promptAborted).toBe(true)
    expect(peer.requests.some((r) => r['op'] === 'oauth_exchange')).toBe(false)
  })

  test('a failing exchange ends the login with its code', async () => {
    const { client } = await setup((r, c) => {
      if (r['op'] === 'oauth_initiate') c.reply(r, { flow_type: 'browser_redirect', session_id: SESSION, pollIntervalMs: 250, auth_url: 'https://a' })
      else if (r['op'] === 'oauth_poll') c.reply(r, { status: 'pending' })
      else c.fail(r, 'EXCHANGE_FAILED')
    })
    const ui: LoginUI = { showVerification: () => undefined, showProgress: () => undefined, promptForCode: async () => 'bad' }
    const error = (await new ProxyOAuthAdapter(client, ui).login('anthropic').catch((e: unknown) => e)) as ProxyError
    expect(error.code).toBe('EXCHANGE_FAILED')
  })
})
