// The OAuth token schema: provider extras are kept (loose object); only these fields are required.
// The wire shape of a token (protocol/messages.ts uses it); auth/token.ts has the plain type and helpers.
// The sandbox-side client checks the same rules by hand (client/answer-checks.ts).
import * as z from 'zod'

export const OAuthTokenSchema = z.looseObject({
  access_token: z.string().min(1),
  refresh_token: z.string().min(1).optional(),
  /** Unix seconds. */
  expiry: z.number().finite(),
  token_type: z.string().min(1),
  /** null is what llxprt-code's clients send when a provider gave no scope. */
  scope: z.string().nullable().optional(),
})
