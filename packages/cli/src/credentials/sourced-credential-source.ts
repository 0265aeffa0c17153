// The session's credential source with sources.json on top: a key name or
// provider/bucket declared there is served from its source (source-cache.ts),
// everything else from the inner source. Callers check grants before asking, so a
// source runs only for a name the session was granted.
import type { OAuthToken } from '@credproxy/core'
import type { AuditSink } from '../broker/hooks.js'
import { exposedError } from '../oauth/errors.js'
import type { CredproxyPaths } from '../paths.js'
import type { CredentialSource, CredentialUsage } from './credential-source.js'
import { SourceCache, type SourceCacheOptions } from './source-cache.js'
import type { SourceValue } from './source-runner.js'
import { loadSourcesConfig, type SourceConfig, type SourcesConfig } from './sources-config.js'

export class SourcedCredentialSource implements CredentialSource {
  readonly cache: SourceCache
  readonly #now: () => number

  constructor(
    private readonly inner: CredentialSource,
    readonly config: SourcesConfig,
    options: SourceCacheOptions,
  ) {
    this.cache = new SourceCache(options)
    this.#now = options.now ?? Date.now
  }

  get refreshes(): boolean {
    return this.inner.refreshes
  }

  async apiKey(name: string): Promise<string | null> {
    const source = this.config.keys.get(name)
    if (source === undefined) return this.inner.apiKey(name)
    return (await this.#read(source)).value
  }

  async hasApiKey(name: string): Promise<boolean> {
    return this.config.keys.has(name) || (await this.inner.hasApiKey(name))
  }

  async listApiKeys(): Promise<string[]> {
    return union(await this.inner.listApiKeys(), this.config.keys.keys())
  }

  freshToken(provider: string, bucket: string): Promise<OAuthToken | null> {
    const source = this.config.tokens.get(`${provider}/${bucket}`)
    return source === undefined ? this.inner.freshToken(provider, bucket) : this.#token(source)
  }

  refreshNow(provider: string, bucket: string): Promise<OAuthToken> {
    const source = this.config.tokens.get(`${provider}/${bucket}`)
    return source === undefined ? this.inner.refreshNow(provider, bucket) : this.#token(source, true)
  }

  accessToken(provider: string, bucket: string, options: { forceRefresh?: boolean } = {}): Promise<OAuthToken | null> {
    return options.forceRefresh === true ? this.refreshNow(provider, bucket) : this.freshToken(provider, bucket)
  }

  async listProviders(): Promise<string[]> {
    return union(await this.inner.listProviders(), [...this.config.tokens.keys()].map((id) => id.split('/')[0] ?? id))
  }

  async listBuckets(provider: string): Promise<string[]> {
    const declared = [...this.config.tokens.keys()].filter((id) => id.startsWith(`${provider}/`)).map((id) => id.slice(provider.length + 1))
    return union(await this.inner.listBuckets(provider), declared)
  }

  bucketStats(provider: string, bucket: string): Promise<CredentialUsage | null> {
    return this.inner.bucketStats(provider, bucket)
  }

  recordUsage(provider: string, bucket: string): Promise<void> {
    // A sourced token has no stored record to count on.
    if (this.config.tokens.has(`${provider}/${bucket}`)) return Promise.resolve()
    return this.inner.recordUsage(provider, bucket)
  }

  saveToken(provider: string, bucket: string, token: OAuthToken): Promise<void> {
    if (this.config.tokens.has(`${provider}/${bucket}`)) {
      return Promise.reject(exposedError('INVALID_REQUEST', `${provider}/${bucket} comes from a source on the host (sources.json); it cannot be saved from here`))
    }
    return this.inner.saveToken(provider, bucket, token)
  }

  removeToken(provider: string, bucket: string): Promise<void> {
    return this.inner.removeToken(provider, bucket)
  }

  /** Kill running source commands and forget cached values (the session's clean-up). Idempotent. */
  stopSources(): void {
    this.cache.stop()
  }

  async close(): Promise<void> {
    this.stopSources()
    await this.inner.close()
  }

  async #token(source: SourceConfig, force = false): Promise<OAuthToken> {
    const read = await this.#read(source, force)
    // Without a declared expiry the token is presented as good for the source's reuse time.
    const expiry = Math.floor((read.expiresAt ?? this.#now() + (source.ttl_seconds ?? 300) * 1000) / 1000)
    return { access_token: read.value, token_type: 'Bearer', expiry }
  }

  async #read(source: SourceConfig, force = false): Promise<SourceValue> {
    try {
      return await this.cache.get(source, { force })
    } catch (error) {
      // The reason (exit code, stderr) stays in the host log; the sandbox learns what to run.
      const what = source.kind === 'key' ? `key ${source.name}` : source.name
      throw exposedError('REFRESH_FAILED', `the host's source for ${what} failed; check it on the host with: credproxy doctor --run-sources`, error)
    }
  }
}

function union(stored: readonly string[], declared: Iterable<string>): string[] {
  return [...new Set([...stored, ...declared])].sort()
}

export interface WithSourcesOptions {
  paths: CredproxyPaths
  env: NodeJS.ProcessEnv
  log: (line: string) => void
  audit: AuditSink
  session: () => string
  /** Already-loaded sources (tests); otherwise <configDir>/sources.json. */
  sources?: SourcesConfig | null
}

/** The session's credential source, with sources.json on top when the file exists. */
export async function withCredentialSources(inner: CredentialSource, options: WithSourcesOptions): Promise<CredentialSource> {
  const config = options.sources !== undefined ? options.sources : await loadSourcesConfig(options.paths)
  if (config === null || (config.keys.size === 0 && config.tokens.size === 0)) return inner
  const { audit, session } = options
  // env sources are the variables as the session starts: a missing one is worth a line now, not at first use.
  for (const source of [...config.keys.values(), ...config.tokens.values()]) {
    if (source.env !== undefined && options.env[source.env] === undefined) options.log(`credential source ${source.name}: host variable ${source.env} is not set`)
  }
  return new SourcedCredentialSource(inner, config, {
    // A copy: env sources are the host variables as they were when the session started.
    env: { ...options.env },
    log: options.log,
    onRun: (run) => {
      const [provider, bucket] = run.kind === 'token' ? run.name.split('/') : []
      audit.write({
        session: session(),
        event: 'source_run',
        ...(run.kind === 'key' ? { key: run.name } : { provider: provider ?? '', bucket: bucket ?? '' }),
        outcome: run.ok ? 'ok' : 'REFRESH_FAILED',
        durationMs: run.durationMs,
        source: { program: run.program, exitCode: run.exitCode },
      })
    },
  })
}
