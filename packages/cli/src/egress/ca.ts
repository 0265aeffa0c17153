// The per-session certificate authority: an ECDSA P-256 CA whose private key lives
// only in this process's memory, and leaf certificates for the hosts the proxy
// intercepts (one per name, cached for the session). Leaves carry subject and
// authority key identifiers, server-auth usage and the exact DNS name or IP
// (Python 3.13's strict verification refuses leaves without them).
import 'reflect-metadata'
import { KeyObject, randomBytes, webcrypto } from 'node:crypto'
type CryptoKey = webcrypto.CryptoKey
type CryptoKeyPair = webcrypto.CryptoKeyPair
import { isIP } from 'node:net'
import { createSecureContext, type SecureContext } from 'node:tls'
import * as x509 from '@peculiar/x509'

/** How long the session CA (and every leaf) is valid. Sessions needing longer get a new proxy. */
export const SESSION_CA_VALIDITY_MS = 24 * 60 * 60 * 1000
/** Start of validity is moved back by this much, so a sandbox clock slightly behind still accepts it. */
export const CERT_BACKDATE_MS = 60 * 60 * 1000
/** Leaf contexts kept per session; past this the oldest is dropped (and remade on demand). */
export const MAX_CACHED_LEAVES = 1_000

const EC_KEY = { name: 'ECDSA', namedCurve: 'P-256' } as const
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const
const crypto = webcrypto
x509.cryptoProvider.set(crypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0])

export interface LeafCertificate {
  certPem: string
  keyPem: string
  context: SecureContext
}

function serialNumber(): string {
  const bytes = randomBytes(16)
  bytes[0] = (bytes[0] ?? 0) & 0x7f // positive INTEGER
  return bytes.toString('hex')
}

/** A name safe to place in a distinguished name (hosts are already validated, this is belt and braces). */
function cnFor(host: string): string {
  return host.replace(/[^A-Za-z0-9.:*-]/g, '')
}

export class SessionCa {
  readonly certPem: string
  readonly notBefore: Date
  readonly notAfter: Date
  readonly #caCert: x509.X509Certificate
  readonly #caKey: CryptoKey
  readonly #leafKeys: CryptoKeyPair
  readonly #leafKeyPem: string
  readonly #leafExtensions: x509.Extension[]
  readonly #leaves = new Map<string, Promise<LeafCertificate>>()

  private constructor(
    caCert: x509.X509Certificate,
    caKey: CryptoKey,
    leafKeys: CryptoKeyPair,
    leafKeyPem: string,
    leafExtensions: x509.Extension[],
  ) {
    this.#caCert = caCert
    this.#caKey = caKey
    this.#leafKeys = leafKeys
    this.#leafKeyPem = leafKeyPem
    this.#leafExtensions = leafExtensions
    this.certPem = caCert.toString('pem')
    this.notBefore = caCert.notBefore
    this.notAfter = caCert.notAfter
  }

  /** A fresh CA for one session. `label` goes into the subject (e.g. the session id). */
  static async create(label: string, now: Date = new Date()): Promise<SessionCa> {
    const caKeys = await crypto.subtle.generateKey(EC_KEY, false, ['sign', 'verify'])
    // One key for all leaves of the session: a leaf then costs one signature, not a key generation.
    const leafKeys = await crypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify'])
    const notBefore = new Date(now.getTime() - CERT_BACKDATE_MS)
    const notAfter = new Date(now.getTime() + SESSION_CA_VALIDITY_MS)
    const caCert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serialNumber(),
      name: `CN=credproxy session ${cnFor(label).slice(0, 40)} CA, O=credproxy`,
      notBefore,
      notAfter,
      keys: caKeys,
      signingAlgorithm: SIGNING,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
      ],
    })
    const leafExtensions = [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      await x509.SubjectKeyIdentifierExtension.create(leafKeys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
    ]
    const leafKeyPem = KeyObject.from(leafKeys.privateKey).export({ type: 'pkcs8', format: 'pem' }).toString()
    return new SessionCa(caCert, caKeys.privateKey, leafKeys, leafKeyPem, leafExtensions)
  }

  /** The leaf for `host` (a DNS name or an IP literal), made once per session. */
  leafFor(host: string): Promise<LeafCertificate> {
    const name = host.toLowerCase()
    const cached = this.#leaves.get(name)
    if (cached !== undefined) return cached
    if (this.#leaves.size >= MAX_CACHED_LEAVES) {
      const oldest = this.#leaves.keys().next().value
      if (oldest !== undefined) this.#leaves.delete(oldest)
    }
    const made = this.#makeLeaf(name)
    this.#leaves.set(name, made)
    made.catch(() => this.#leaves.delete(name))
    return made
  }

  async #makeLeaf(host: string): Promise<LeafCertificate> {
    const san = isIP(host) === 0 ? { type: 'dns' as const, value: host } : { type: 'ip' as const, value: host }
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serialNumber(),
      subject: `CN=${cnFor(host)}`,
      issuer: this.#caCert.subject,
      notBefore: this.notBefore,
      notAfter: this.notAfter,
      signingKey: this.#caKey,
      publicKey: this.#leafKeys.publicKey,
      signingAlgorithm: SIGNING,
      extensions: [...this.#leafExtensions, new x509.SubjectAlternativeNameExtension([san], false)],
    })
    const certPem = cert.toString('pem')
    const context = createSecureContext({ cert: certPem, key: this.#leafKeyPem, minVersion: 'TLSv1.2' })
    return { certPem, keyPem: this.#leafKeyPem, context }
  }
}
