// The broker's handshake state machine, driven directly (no sockets): every
// transition of dev-docs/protocol.md "Handshake", as a table, plus the v3 proof
// round trip computed the way a client does.
import { computeClientProof, computeServerProof, MAX_PROTOCOL_VERSION, proofsEqual } from '@credproxy/core'
import { describe, expect, test } from 'vitest'
import {
  BAD_PROOF_MESSAGE,
  BAD_TOKEN_MESSAGE,
  handshakeStep,
  INITIAL_HANDSHAKE_STATE,
  LEGACY_REFUSED_MESSAGE,
  refuseAdmission,
  type HandshakeConfig,
  type HandshakeFrame,
  type HandshakeState,
} from '../src/broker/handshake-machine.js'

const SECRET = Buffer.alloc(32, 7)
const OTHER_SECRET = Buffer.alloc(32, 8)
const CLIENT_NONCE = 'c'.repeat(64)
const SERVER_NONCE = 'e'.repeat(64)
const LEGACY_TOKEN = 'a'.repeat(64)

function config(over: Partial<HandshakeConfig> = {}): HandshakeConfig {
  return { sessionId: 'sess-machine-test', secret: SECRET, allowLegacyClients: false, legacyToken: undefined, nonce: () => SERVER_NONCE, ...over }
}

function hello(payload: Record<string, unknown>, v = 3): HandshakeFrame {
  return { v, op: 'handshake', payload }
}

const V3_HELLO = hello({ minVersion: 1, maxVersion: 3, clientNonce: CLIENT_NONCE })
const AWAIT_FINISH: HandshakeState = { phase: 'await_finish', clientNonce: CLIENT_NONCE, serverNonce: SERVER_NONCE }
const finish = (clientProof: string): HandshakeFrame => ({ v: 3, op: 'handshake_finish', payload: { clientProof } })
const GOOD_PROOF = computeClientProof(SECRET, SERVER_NONCE, CLIENT_NONCE)

interface Row {
  name: string
  config?: Partial<HandshakeConfig>
  state?: HandshakeState
  frame: HandshakeFrame
  next: HandshakeState['phase']
  send: Record<string, unknown>
  action: Record<string, unknown>
}

const ROWS: Row[] = [
  {
    name: 'v3 hello: challenge with the server proof, await finish',
    frame: V3_HELLO,
    next: 'await_finish',
    send: { v: 3, op: 'handshake', ok: true, data: { version: 3, serverNonce: SERVER_NONCE, serverProof: computeServerProof(SECRET, CLIENT_NONCE, SERVER_NONCE) } },
    action: { type: 'continue' },
  },
  {
    name: 'v3 finish with the right proof: settle at v3 with the session id',
    state: AWAIT_FINISH,
    frame: finish(GOOD_PROOF),
    next: 'settled',
    send: { v: 3, op: 'handshake_finish', ok: true, data: { session: 'sess-machine-test' } },
    action: { type: 'settle', version: 3, op: 'handshake_finish' },
  },
  {
    name: 'v3 finish with a proof of another secret: UNAUTHORIZED bad-proof',
    state: AWAIT_FINISH,
    frame: finish(computeClientProof(OTHER_SECRET, SERVER_NONCE, CLIENT_NONCE)),
    next: 'failed',
    send: { v: 3, op: 'handshake_finish', ok: false, code: 'UNAUTHORIZED', error: BAD_PROOF_MESSAGE },
    action: { type: 'fail', code: 'UNAUTHORIZED', reason: 'bad-proof' },
  },
  {
    name: 'v3 finish without a proof: INVALID_REQUEST malformed-finish',
    state: AWAIT_FINISH,
    frame: { v: 3, op: 'handshake_finish', payload: {} },
    next: 'failed',
    send: { v: 3, op: 'handshake_finish', ok: false, code: 'INVALID_REQUEST' },
    action: { type: 'fail', code: 'INVALID_REQUEST', reason: 'malformed-finish' },
  },
  {
    name: 'finish without start: not-a-handshake',
    frame: finish(GOOD_PROOF),
    next: 'failed',
    send: { v: 1, op: 'handshake', ok: false, code: 'INVALID_REQUEST', error: 'The first frame must be a handshake.' },
    action: { type: 'fail', code: 'INVALID_REQUEST', reason: 'not-a-handshake' },
  },
  {
    name: 'a request before the handshake: not-a-handshake',
    frame: { id: '1', op: 'get_api_key', payload: { name: 'K' } },
    next: 'failed',
    send: { v: 1, op: 'handshake', ok: false, code: 'INVALID_REQUEST' },
    action: { type: 'fail', code: 'INVALID_REQUEST', reason: 'not-a-handshake' },
  },
  {
    name: 'a handshake without versions: malformed-handshake',
    frame: hello({}),
    next: 'failed',
    send: { v: 1, op: 'handshake', ok: false, code: 'INVALID_REQUEST' },
    action: { type: 'fail', code: 'INVALID_REQUEST', reason: 'malformed-handshake' },
  },
  {
    name: 'no common version (client only v4+): UNKNOWN_VERSION, answered in the newest version it knows',
    frame: hello({ minVersion: MAX_PROTOCOL_VERSION + 1, maxVersion: MAX_PROTOCOL_VERSION + 5, clientNonce: CLIENT_NONCE }, 9),
    next: 'failed',
    send: { v: MAX_PROTOCOL_VERSION, op: 'handshake', ok: false, code: 'UNKNOWN_VERSION', error: 'This broker speaks protocol v1 to v3.' },
    action: { type: 'fail', code: 'UNKNOWN_VERSION', reason: 'no-common-version' },
  },
  {
    name: 'a client that speaks v1..v5 negotiates v3',
    frame: hello({ minVersion: 1, maxVersion: 5, clientNonce: CLIENT_NONCE }),
    next: 'await_finish',
    send: { v: 3, op: 'handshake', ok: true, data: { version: 3, serverNonce: SERVER_NONCE } },
    action: { type: 'continue' },
  },
  {
    name: 'v3-only hello without a nonce: missing-nonce',
    frame: hello({ minVersion: 3, maxVersion: 3 }),
    next: 'failed',
    send: { v: 3, op: 'handshake', ok: false, code: 'INVALID_REQUEST', error: 'A v3 handshake needs a clientNonce.' },
    action: { type: 'fail', code: 'INVALID_REQUEST', reason: 'missing-nonce' },
  },
  {
    name: 'legacy v2 refused when legacy clients are not allowed',
    frame: hello({ minVersion: 1, maxVersion: 2, capabilityToken: LEGACY_TOKEN }, 2),
    next: 'failed',
    send: { v: 2, op: 'handshake', ok: false, code: 'UNAUTHORIZED', error: LEGACY_REFUSED_MESSAGE },
    action: { type: 'fail', code: 'UNAUTHORIZED', reason: 'legacy-not-allowed' },
  },
  {
    name: 'a v1..v3 hello without a nonce falls back to legacy v2 (refused when not allowed)',
    frame: hello({ minVersion: 1, maxVersion: 3 }),
    next: 'failed',
    send: { v: 2, op: 'handshake', ok: false, code: 'UNAUTHORIZED' },
    action: { type: 'fail', code: 'UNAUTHORIZED', reason: 'legacy-not-allowed' },
  },
  {
    name: 'legacy v2 with the right token: settle at v2',
    config: { allowLegacyClients: true, legacyToken: LEGACY_TOKEN },
    frame: hello({ minVersion: 1, maxVersion: 2, capabilityToken: LEGACY_TOKEN }, 2),
    next: 'settled',
    send: { v: 2, op: 'handshake', ok: true, data: { version: 2 } },
    action: { type: 'settle', version: 2, op: 'handshake' },
  },
  {
    name: 'legacy v1 with the right token: settle at v1',
    config: { allowLegacyClients: true, legacyToken: LEGACY_TOKEN },
    frame: hello({ minVersion: 1, maxVersion: 1, capabilityToken: LEGACY_TOKEN }, 1),
    next: 'settled',
    send: { v: 1, op: 'handshake', ok: true, data: { version: 1 } },
    action: { type: 'settle', version: 1, op: 'handshake' },
  },
  {
    name: 'legacy with a wrong token: bad-token',
    config: { allowLegacyClients: true, legacyToken: LEGACY_TOKEN },
    frame: hello({ minVersion: 1, maxVersion: 2, capabilityToken: 'b'.repeat(64) }, 2),
    next: 'failed',
    send: { v: 2, op: 'handshake', ok: false, code: 'UNAUTHORIZED', error: BAD_TOKEN_MESSAGE },
    action: { type: 'fail', code: 'UNAUTHORIZED', reason: 'bad-token' },
  },
  {
    name: 'legacy without a token where one is required: missing-token',
    config: { allowLegacyClients: true, legacyToken: LEGACY_TOKEN },
    frame: hello({ minVersion: 1, maxVersion: 2 }, 2),
    next: 'failed',
    send: { v: 2, op: 'handshake', ok: false, code: 'UNAUTHORIZED', error: BAD_TOKEN_MESSAGE },
    action: { type: 'fail', code: 'UNAUTHORIZED', reason: 'missing-token' },
  },
  {
    name: 'legacy on the peer check alone (no token configured): settle without a token',
    config: { allowLegacyClients: true },
    frame: hello({ minVersion: 1, maxVersion: 2 }, 2),
    next: 'settled',
    send: { v: 2, op: 'handshake', ok: true, data: { version: 2 } },
    action: { type: 'settle', version: 2, op: 'handshake' },
  },
  {
    name: 'legacy allowed does not downgrade a v3 client with a nonce',
    config: { allowLegacyClients: true, legacyToken: LEGACY_TOKEN },
    frame: hello({ minVersion: 1, maxVersion: 3, clientNonce: CLIENT_NONCE, capabilityToken: LEGACY_TOKEN }),
    next: 'await_finish',
    send: { v: 3, op: 'handshake', ok: true },
    action: { type: 'continue' },
  },
]

describe('handshake machine transitions', () => {
  test.each(ROWS)('$name', (row) => {
    const step = handshakeStep(config(row.config), row.state ?? INITIAL_HANDSHAKE_STATE, row.frame)
    expect(step.next.phase).toBe(row.next)
    expect(step.send).toMatchObject(row.send)
    expect(step.action).toEqual(row.action)
  })

  test('every refusal frame has exactly the wire fields v, op, ok, code, error in that order', () => {
    const step = handshakeStep(config(), INITIAL_HANDSHAKE_STATE, hello({ minVersion: 1, maxVersion: 2 }, 2))
    expect(JSON.stringify(step.send)).toBe(JSON.stringify({ v: 2, op: 'handshake', ok: false, code: 'UNAUTHORIZED', error: LEGACY_REFUSED_MESSAGE }))
  })

  test('the challenge keeps both nonces for the finish step', () => {
    const step = handshakeStep(config(), INITIAL_HANDSHAKE_STATE, V3_HELLO)
    expect(step.next).toEqual(AWAIT_FINISH)
  })

  test('states that take no frames are a caller bug, not a silent pass', () => {
    expect(() => handshakeStep(config(), { phase: 'settled', version: 3 }, V3_HELLO)).toThrow(/settled/)
    expect(() => handshakeStep(config(), { phase: 'failed' }, V3_HELLO)).toThrow(/failed/)
  })

  test('a full v3 round trip, proofs computed the way a client does', () => {
    const nonces = ['d'.repeat(64)]
    const cfg = config({ nonce: () => nonces[0] ?? '' })
    const challenge = handshakeStep(cfg, INITIAL_HANDSHAKE_STATE, V3_HELLO)
    const data = challenge.send['data'] as { serverNonce: string; serverProof: string }
    expect(data.serverNonce).toBe(nonces[0])
    expect(proofsEqual(computeServerProof(SECRET, CLIENT_NONCE, data.serverNonce), data.serverProof)).toBe(true)
    expect(proofsEqual(computeServerProof(OTHER_SECRET, CLIENT_NONCE, data.serverNonce), data.serverProof)).toBe(false)
    const done = handshakeStep(cfg, challenge.next, finish(computeClientProof(SECRET, data.serverNonce, CLIENT_NONCE)))
    expect(done.action).toEqual({ type: 'settle', version: 3, op: 'handshake_finish' })
  })

  test('a proof for an earlier challenge (replayed nonce) is refused', () => {
    const replay = handshakeStep(config(), { ...AWAIT_FINISH, serverNonce: 'f'.repeat(64) }, finish(GOOD_PROOF))
    expect(replay.action).toEqual({ type: 'fail', code: 'UNAUTHORIZED', reason: 'bad-proof' })
  })

  test('no free slot after authentication: RESOURCE_EXHAUSTED in the negotiated version', () => {
    const step = refuseAdmission('handshake_finish', 3, 4)
    expect(step.send).toEqual({
      v: 3,
      op: 'handshake_finish',
      ok: false,
      code: 'RESOURCE_EXHAUSTED',
      error: 'All 4 connections of this session are busy with requests; retry shortly.',
    })
    expect(step.action).toEqual({ type: 'fail', code: 'RESOURCE_EXHAUSTED', reason: 'too-many-connections' })
  })
})
