// oidc-provider 9 ships no type declarations; this is the small part the test
// authorization server (auth-server.ts) uses.
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http'

  export interface OidcContext {
    oidc?: { params?: Record<string, unknown> }
  }

  export default class Provider {
    constructor(issuer: string, configuration: Record<string, unknown>)
    callback(): (req: IncomingMessage, res: ServerResponse) => void
    on(event: string, listener: (ctx: OidcContext, error?: unknown) => void): this
  }
}
