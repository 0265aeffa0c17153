// openid-client (and jose, oauth4webapi under it) loaded on first use: `run`, `serve` and
// `token` build an OAuth broker on every start, but only a login or a refresh talks to a server.
import type * as OpenidClient from 'openid-client'

let loaded: typeof OpenidClient | undefined

export async function openidClient(): Promise<typeof OpenidClient> {
  loaded ??= await import('openid-client')
  return loaded
}

/** The module once a flow has loaded it; before that no error of its classes can exist. */
export function loadedOpenidClient(): typeof OpenidClient | undefined {
  return loaded
}
