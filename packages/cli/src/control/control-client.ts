// The host commands' side of the control channel (control.ts): one request, one answer.
import { connect } from 'node:net'
import { encodeFrame, FrameDecoder } from '@credproxy/core'
import { MAX_CONTROL_FRAME_BYTES, ControlResponseSchema, type ControlOp } from './control-channel.js'
import { CredproxyError } from '../errors.js'

/** How long a host command waits for a session to answer. */
export const CONTROL_REQUEST_TIMEOUT_MS = 3_000

/** Send one control request and return its data; failures are CredproxyErrors with a next step. */
export async function sendControlRequest(
  socketPath: string,
  op: ControlOp,
  payload?: unknown,
  options: { timeoutMs?: number } = {},
): Promise<unknown> {
  const id = 'c1'
  const answer = await new Promise<unknown>((resolve, reject) => {
    const socket = connect(socketPath)
    const decoder = new FrameDecoder({ maxFrameBytes: MAX_CONTROL_FRAME_BYTES })
    let settled = false
    const finish = (error: Error | null, value?: unknown): void => {
      if (settled) return
      settled = true
      socket.destroy()
      if (error === null) resolve(value)
      else reject(error)
    }
    const unreachable = (): CredproxyError =>
      new CredproxyError(
        'UNAVAILABLE',
        `the session's control socket ${socketPath} did not answer`,
        { hint: 'Run `credproxy sessions` to list running sessions.' },
      )
    socket.setTimeout(options.timeoutMs ?? CONTROL_REQUEST_TIMEOUT_MS, () => finish(unreachable()))
    socket.on('error', () => finish(unreachable()))
    socket.on('close', () => finish(unreachable()))
    socket.on('connect', () => {
      socket.write(encodeFrame(payload === undefined ? { id, op } : { id, op, payload }, MAX_CONTROL_FRAME_BYTES))
    })
    socket.on('data', (chunk: Buffer) => {
      try {
        const frame = decoder.push(chunk)[0]
        if (frame !== undefined) finish(null, frame)
      } catch {
        finish(unreachable())
      }
    })
  })
  const response = ControlResponseSchema.safeParse(answer)
  if (!response.success || response.data.id !== id) {
    throw new CredproxyError('FAILED', `the session answered with a malformed control message`, { hint: 'Run `credproxy sessions` to check it.' })
  }
  if (!response.data.ok) {
    throw new CredproxyError('USAGE', `the session refused ${op}: ${response.data.error}`, { hint: 'Run `credproxy grant --help` for the syntax.' })
  }
  return response.data.data
}
