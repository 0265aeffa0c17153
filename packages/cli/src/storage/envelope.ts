// The encrypted file format: AES-256-GCM in a versioned JSON envelope, key from
// scrypt over the machine secret. See dev-docs/storage.md "File format".
import { createCipheriv, createDecipheriv, createHash, randomBytes, scrypt } from 'node:crypto'
import { z } from 'zod'

export const ENVELOPE_FORMAT = 'credproxy-secret'
export const ENVELOPE_VERSION = 1
export const AES_KEY_BYTES = 32
export const GCM_IV_BYTES = 12
export const GCM_TAG_BYTES = 16
/** scrypt cost: 2^14 x 8 x 128 bytes = 16 MiB, ~50 ms; the input is already 256 random bits. */
export const SCRYPT_PARAMS = { N: 2 ** 14, r: 8, p: 1 } as const
export const SCRYPT_MAX_MEMORY_BYTES = 64 * 1024 * 1024
/** Bounds on params read from a file, so a crafted envelope cannot make us burn memory. */
const MAX_SCRYPT_N = 2 ** 20
/** Derived keys kept per process (one per machine secret + salt + params). */
const KEY_CACHE_ENTRIES = 8

const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/)

export const EnvelopeSchema = z.strictObject({
  format: z.literal(ENVELOPE_FORMAT),
  version: z.literal(ENVELOPE_VERSION),
  kdf: z.strictObject({
    name: z.literal('scrypt'),
    N: z.number().int().min(2).max(MAX_SCRYPT_N),
    r: z.number().int().min(1).max(32),
    p: z.number().int().min(1).max(16),
    salt: base64,
  }),
  cipher: z.literal('aes-256-gcm'),
  iv: base64,
  tag: base64,
  ciphertext: base64,
})
export type Envelope = z.infer<typeof EnvelopeSchema>

/** Why an envelope could not be opened; the caller adds the path. */
export class EnvelopeError extends Error {
  override name = 'EnvelopeError'
}

interface KdfParams {
  N: number
  r: number
  p: number
}

const keyCache = new Map<string, Promise<Buffer>>()

/** scrypt is slow on purpose: derive each key once per process. */
function deriveKey(secret: Buffer, salt: Buffer, params: KdfParams): Promise<Buffer> {
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
  constructor(
    private readonly secret: Buffer,
    /** Salt for new envelopes; old envelopes carry their own. */
    private readonly salt: Buffer,
  ) {}

  /** Encrypt plaintext bound to aad (the credential identity): a swapped file fails to open. */
  async seal(aad: string, plaintext: string): Promise<string> {
    const key = await deriveKey(this.secret, this.salt, SCRYPT_PARAMS)
    const iv = randomBytes(GCM_IV_BYTES)
    const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: GCM_TAG_BYTES })
    cipher.setAAD(Buffer.from(aad, 'utf8'))
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
    const envelope: Envelope = {
      format: ENVELOPE_FORMAT,
      version: ENVELOPE_VERSION,
      kdf: { name: 'scrypt', ...SCRYPT_PARAMS, salt: this.salt.toString('base64') },
      cipher: 'aes-256-gcm',
      iv: iv.toString('base64'),
      tag: cipher.getAuthTag().toString('base64'),
      ciphertext: ciphertext.toString('base64'),
    }
    return `${JSON.stringify(envelope)}\n`
  }

  async open(aad: string, text: string): Promise<string> {
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      throw new EnvelopeError('is not valid JSON')
    }
    const parsed = EnvelopeSchema.safeParse(json)
    if (!parsed.success) {
      const field = parsed.error.issues[0]?.path.join('.') ?? ''
      throw new EnvelopeError(`is not a credproxy envelope (field '${field}')`)
    }
    const envelope = parsed.data
    const iv = Buffer.from(envelope.iv, 'base64')
    const tag = Buffer.from(envelope.tag, 'base64')
    if (iv.length !== GCM_IV_BYTES || tag.length !== GCM_TAG_BYTES) throw new EnvelopeError('has a bad iv or tag length')
    const { N, r, p, salt } = envelope.kdf
    let key: Buffer
    try {
      key = await deriveKey(this.secret, Buffer.from(salt, 'base64'), { N, r, p })
    } catch {
      // In range but refused by scrypt (N not a power of 2, over maxmem): still a bad file, named as one.
      throw new EnvelopeError(`has unusable scrypt parameters (N=${N}, r=${r}, p=${p})`)
    }
    const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: GCM_TAG_BYTES })
    decipher.setAAD(Buffer.from(aad, 'utf8'))
    decipher.setAuthTag(tag)
    try {
      return Buffer.concat([decipher.update(Buffer.from(envelope.ciphertext, 'base64')), decipher.final()]).toString('utf8')
    } catch {
      throw new EnvelopeError('failed to decrypt (wrong machine secret, tampered, or another credential\'s file)')
    }
  }
}
