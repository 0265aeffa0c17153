// OS keyring backend: one keyring entry per credential (service from
// CREDPROXY_KEYRING_SERVICE, default 'credproxy'; account = recordId), plus an
// index entry, because keyrings cannot list entries portably.
import { extraKey, isJsonObject } from './json-checks.js'
import type { KeyringClient } from './keyring-client.js'
import { LockTimeoutError, WRITE_LOCK_WAIT_MS, type LockDirectory } from './locks.js'
import { recordId, type RecordBackend, type RecordKind, type RecordRef } from './record-backend.js'
import { parseCheckedJsonFile } from '../json-file.js'

export const INDEX_ACCOUNT = 'index'
const INDEX_LOCK = 'keyring-index'

const RECORD_ID = /^(?:token:[a-zA-Z0-9._@-]{1,64}:[a-zA-Z0-9._@-]{1,64}|key:[a-zA-Z0-9._-]{1,64})$/
/** {version: 1, records: [record id, ...]} and nothing else. */
function isIndexJson(json: unknown): json is { version: 1; records: string[] } {
  return (
    isJsonObject(json) &&
    json['version'] === 1 &&
    Array.isArray(json['records']) &&
    json['records'].every((id) => typeof id === 'string' && RECORD_ID.test(id)) &&
    extraKey(json, ['version', 'records']) === undefined
  )
}

function parseRecordId(id: string): RecordRef {
  const [kind, a = '', b = ''] = id.split(':')
  return kind === 'token' ? { kind: 'token', provider: a, bucket: b } : { kind: 'key', name: a }
}

export class KeyringBackend implements RecordBackend {
  readonly name = 'keyring' as const

  constructor(
    private readonly keyring: KeyringClient,
    private readonly locks: LockDirectory,
  ) {}

  describe(ref: RecordRef): string {
    return `keyring entry '${this.keyring.service}/${recordId(ref)}'`
  }

  read(ref: RecordRef): Promise<string | null> {
    return this.keyring.get(recordId(ref))
  }

  /** Index first: a crash in between leaves a listed name without a value, never a hidden value. */
  async write(ref: RecordRef, value: string): Promise<void> {
    await this.updateIndex((ids) => ids.add(recordId(ref)))
    await this.keyring.set(recordId(ref), value)
  }

  async remove(ref: RecordRef): Promise<boolean> {
    const removed = await this.keyring.delete(recordId(ref))
    await this.updateIndex((ids) => ids.delete(recordId(ref)))
    return removed
  }

  async list(kind: RecordKind): Promise<RecordRef[]> {
    return (await this.readIndex()).map(parseRecordId).filter((ref) => ref.kind === kind)
  }

  private async readIndex(): Promise<string[]> {
    const text = await this.keyring.get(INDEX_ACCOUNT)
    if (text === null) return []
    const entry = `keyring entry '${this.keyring.service}/${INDEX_ACCOUNT}'`
    return parseCheckedJsonFile<{ version: 1; records: string[] }>(text, entry, (json) => (isIndexJson(json) ? undefined : { field: '', issue: 'not an index' }), {
      message: () => `${entry} is not a valid credproxy index`,
      hint: 'Delete that entry with your keyring tool (e.g. secret-tool); credproxy rebuilds it as credentials are saved.',
    }).records
  }

  private async updateIndex(change: (ids: Set<string>) => unknown): Promise<void> {
    await this.locks.withLock(
      INDEX_LOCK,
      { waitMs: WRITE_LOCK_WAIT_MS },
      () => new LockTimeoutError('keyring index', WRITE_LOCK_WAIT_MS),
      async () => {
        const ids = new Set(await this.readIndex())
        const before = ids.size
        change(ids)
        if (ids.size === before) return
        await this.keyring.set(INDEX_ACCOUNT, JSON.stringify({ version: 1, records: [...ids].sort() }))
      },
    )
  }
}
