// The encrypted file format: AES-256-GCM in a versioned JSON envelope, key from
// HKDF-SHA256 over the machine secret (version 2; version 1 files, keyed with
// scrypt, are still read and become version 2 on their next write).
// See dev-docs/storage.md "File format".
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes, scrypt } from 'node:crypto'
import { extraKey, isJsonObject, type JsonObject } from './json-checks.js'
import { CredproxyError } from '../errors.js'
import { safeParseCheckedJson } from '../json-file.js'

export const ENVELOPE_FORMAT = 'credproxy-secret'
/** The version every write produces. */
export const ENVELOPE_VERSION = 2
/** scrypt-keyed envelopes of credproxy before HKDF: read, never written. */
export const SCRYPT_ENVELOPE_VERSION = 1
/** HKDF `info`: binds the derived key to this use of the machine secret. */
export const HKDF_INFO = 'credproxy/file-key/v2'
export const AES_KEY_BYTES = 32
export const GCM_IV_BYTES = 12
export const GCM_TAG_BYTES = 16
/** The scrypt cost version 1 files were written with: 2^14 x 8 x 128 bytes = 16 MiB, ~50 ms. */
export const SCRYPT_PARAMS = { N: 2 ** 14, r: 8, p: 1 } as const
export const SCRYPT_MAX_MEMORY_BYTES = 64 * 1024 * 1024
/** Bounds on params read from a file, so a crafted envelope cannot make us burn memory. */
const MAX_SCRYPT_N = 2 ** 20
/** Derived keys kept per process (one per machine secret + salt + params). */
const KEY_CACHE_ENTRIES = 8

const BASE64_LOOSE = /^[A-Za-z0-9+/]*={0,2}$/

interface SealedFields {
  cipher: 'aes-256-gcm'
  iv: string
  tag: string
  ciphertext: string
}
export type Envelope = SealedFields &
  (
    | { format: typeof ENVELOPE_FORMAT; version: typeof ENVELOPE_VERSION; kdf: { name: 'hkdf-sha256'; salt: string } }
    | { format: typeof ENVELOPE_FORMAT; version: typeof SCRYPT_ENVELOPE_VERSION; kdf: { name: 'scrypt'; N: number; r: number; p: number; salt: string } }
  )

const isBase64 = (value: unknown): boolean => typeof value === 'string' && BASE64_LOOSE.test(value)
const isIntIn = (value: unknown, min: number, max: number): boolean => typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max

/** The first invalid field of a parsed envelope ('' for the whole), or undefined when it is one of the two versions. */
export function envelopeProblem(json: unknown): string | undefined {
  if (!isJsonObject(json)) return ''
  const version = json['version']
  if (version !== ENVELOPE_VERSION && version !== SCRYPT_ENVELOPE_VERSION) return 'version'
  if (json['format'] !== ENVELOPE_FORMAT) return 'format'
  const kdf = json['kdf']
  if (!isJsonObject(kdf)) return 'kdf'
  const kdfBad = version === ENVELOPE_VERSION ? hkdfProblem(kdf) : scryptProblem(kdf)
  if (kdfBad !== undefined) return kdfBad === '' ? 'kdf' : `kdf.${kdfBad}`
  if (json['cipher'] !== 'aes-256-gcm') return 'cipher'
  for (const field of ['iv', 'tag', 'ciphertext']) if (!isBase64(json[field])) return field
  return extraKey(json, ['format', 'version', 'kdf', 'cipher', 'iv', 'tag', 'ciphertext']) === undefined ? undefined : ''
}

function hkdfProblem(kdf: JsonObject): string | undefined {
  if (kdf['name'] !== 'hkdf-sha256') return 'name'
  if (!isBase64(kdf['salt'])) return 'salt'
  return extraKey(kdf, ['name', 'salt']) === undefined ? undefined : ''
}

function scryptProblem(kdf: JsonObject): string | undefined {
  if (kdf['name'] !== 'scrypt') return 'name'
  if (!isIntIn(kdf['N'], 2, MAX_SCRYPT_N)) return 'N'
  if (!isIntIn(kdf['r'], 1, 32)) return 'r'
  if (!isIntIn(kdf['p'], 1, 16)) return 'p'
  if (!isBase64(kdf['salt'])) return 'salt'
  return extraKey(kdf, ['name', 'N', 'r', 'p', 'salt']) === undefined ? undefined : ''
}

/** AAD of a record in an envelope of `version`: the credential's identity, so a swapped file fails to open. */
export function envelopeAad(version: number, recordId: string): Buffer {
  return Buffer.from(`credproxy/v${version}/${recordId}`, 'utf8')
}

/** Why an envelope could not be opened (code ENVELOPE_INVALID); the caller adds the path. */
function envelopeError(reason: string): CredproxyError {
  return new CredproxyError('ENVELOPE_INVALID', reason)
}

interface KdfParams {
  N: number
  r: number
  p: number
}

const keyCache = new Map<string, Promise<Buffer>>()

/** HKDF-SHA256: the machine secret is already 256 random bits, so no stretching is needed (microseconds). */
function hkdfKey(secret: Buffer, salt: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, salt, HKDF_INFO, AES_KEY_BYTES))
}

/** scrypt (version 1 files only) is slow on purpose: derive each key once per process. */
function deriveScryptKey(secret: Buffer, salt: Buffer, params: KdfParams): Promise<Buffer> {
  const id = createHash('sha256').update(secret).update(salt).update(`${params.N}/${params.r}/${params.p}`).digest('hex')
  const cached = keyCache.get(id)
  if (cached !== undefined) return cached
  const derived = new Promise<Buffer>((resolve, reject) => {
    scrypt(secret, salt, AES_KEY_BYTES, { ...params, maxmem: SCRYPT_MAX_MEMORY_BYTES }, (error, key) => {
      if (error === null) resolve(key)
      else reject(error)
    })
  })
  if (keyCache.size >= KEY_CACHE_ENTRIES) keyCache.clear()
  keyCache.set(id, derived)
  derived.catch(() => keyCache.delete(id))
  return derived
}

export class CredentialCipher {
  /** The key for new envelopes (this salt), derived on first use. */
  #sealKey: Buffer | undefined

  constructor(
    private readonly secret: Buffer,
    /** Salt for new envelopes; old envelopes carry their own. */
    private readonly salt: Buffer,
  ) {}

  /** Encrypt plaintext bound to the record id (see envelopeAad), always as the current version. */
  seal(recordId: string, plaintext: string): string {
    this.#sealKey ??= hkdfKey(this.secret, this.salt)
    const iv = randomBytes(GCM_IV_BYTES)
    const cipher = createCipheriv('aes-256-gcm', this.#sealKey, iv, { authTagLength: GCM_TAG_BYTES })
    cipher.setAAD(envelopeAad(ENVELOPE_VERSION, recordId))
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
    const envelope: Envelope = {
      format: ENVELOPE_FORMAT,
      version: ENVELOPE_VERSION,
      kdf: { name: 'hkdf-sha256', salt: this.salt.toString('base64') },
      cipher: 'aes-256-gcm',
      iv: iv.toString('base64'),
      tag: cipher.getAuthTag().toString('base64'),
      ciphertext: ciphertext.toString('base64'),
    }
    return `${JSON.stringify(envelope)}\n`
  }

  /** The plaintext of an envelope of either version, and which version it was. */
  async open(recordId: string, text: string): Promise<{ plaintext: string; version: number }> {
    const parsed = safeParseCheckedJson<Envelope>(text, (json) => {
      const field = envelopeProblem(json)
      return field === undefined ? undefined : { field, issue: 'invalid' }
    })
    if (!parsed.ok) {
      const { problem } = parsed
      throw envelopeError(problem.kind === 'syntax' ? 'is not valid JSON' : `is not a credproxy envelope (field '${problem.field}')`)
    }
    const envelope = parsed.value
    const iv = Buffer.from(envelope.iv, 'base64')
    const tag = Buffer.from(envelope.tag, 'base64')
    if (iv.length !== GCM_IV_BYTES || tag.length !== GCM_TAG_BYTES) throw envelopeError('has a bad iv or tag length')
    let key: Buffer
    if (envelope.version === ENVELOPE_VERSION) {
      const salt = Buffer.from(envelope.kdf.salt, 'base64')
      key = salt.equals(this.salt) ? (this.#sealKey ??= hkdfKey(this.secret, this.salt)) : hkdfKey(this.secret, salt)
    } else {
      const { N, r, p, salt } = envelope.kdf
      try {
        key = await deriveScryptKey(this.secret, Buffer.from(salt, 'base64'), { N, r, p })
      } catch {
        // In range but refused by scrypt (N not a power of 2, over maxmem): still a bad file, named as one.
        throw envelopeError(`has unusable scrypt parameters (N=${N}, r=${r}, p=${p})`)
      }
    }
    const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: GCM_TAG_BYTES })
    decipher.setAAD(envelopeAad(envelope.version, recordId))
    decipher.setAuthTag(tag)
    try {
      const plaintext = Buffer.concat([decipher.update(Buffer.from(envelope.ciphertext, 'base64')), decipher.final()]).toString('utf8')
      return { plaintext, version: envelope.version }
    } catch {
      throw envelopeError('failed to decrypt (wrong machine secret, tampered, or another credential\'s file)')
    }
  }
}
