// ProviderKeyStorage over the broker socket: read-only inside the sandbox.
import type { ProxyRequester } from '../client/requester.js'
import { ProxyError } from '../protocol/errors.js'
import { isKeyName } from '../protocol/names.js'
import { nullWhenNotFound } from './proxy-token-store.js'
import type { ProviderKeyStorage } from './stores.js'

export class ProxyProviderKeyStorage implements ProviderKeyStorage {
  readonly #client: ProxyRequester

  constructor(client: ProxyRequester) {
    this.#client = client
  }

  async getKey(name: string): Promise<string | null> {
    const data = await nullWhenNotFound(this.#client.request('get_api_key', { name }))
    return data === null ? null : data.key
  }

  // Keys are written only on the host, where the user can see what is stored.
  async saveKey(name: string, _value: string): Promise<void> {
    throw new ProxyError('FORBIDDEN', `API keys are managed on the host: run \`credproxy key set ${shown(name)}\` outside the sandbox`)
  }

  async deleteKey(name: string): Promise<boolean> {
    throw new ProxyError('FORBIDDEN', `API keys are managed on the host: run \`credproxy key delete ${shown(name)}\` outside the sandbox`)
  }

  async listKeys(): Promise<string[]> {
    return (await this.#client.request('list_api_keys', {})).keys
  }

  async hasKey(name: string): Promise<boolean> {
    return (await this.#client.request('has_api_key', { name })).exists
  }
}

// Only a valid name is echoed into the hint; anything else could carry terminal escapes.
function shown(name: string): string {
  return isKeyName(name) ? name : 'NAME'
}
