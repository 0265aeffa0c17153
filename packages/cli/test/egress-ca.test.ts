// The session CA and its leaves: the properties strict clients check (key
// identifiers, server-auth usage, exact SAN, back-dated short validity), checked
// with Node's X509Certificate, a real TLS handshake and `openssl verify`.
import 'reflect-metadata'
import { execFileSync, spawnSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect, createServer, type Server } from 'node:tls'
import type { AddressInfo } from 'node:net'
import * as x509 from '@peculiar/x509'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { CERT_BACKDATE_MS, SESSION_CA_VALIDITY_MS, SessionCa } from '../src/egress/ca.js'

let ca: SessionCa
const now = new Date()
const dir = mkdtempSync(join(tmpdir(), 'cp-egress-ca-'))
beforeAll(async () => {
  ca = await SessionCa.create('test-session', now)
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('session CA', () => {
  test('an ECDSA P-256 CA, back-dated, valid for a short time', () => {
    const cert = new X509Certificate(ca.certPem)
    expect(cert.ca).toBe(true)
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1')
    expect(new Date(cert.validFrom).getTime()).toBeLessThanOrEqual(now.getTime() - CERT_BACKDATE_MS + 1000)
    expect(new Date(cert.validTo).getTime()).toBeLessThanOrEqual(now.getTime() + SESSION_CA_VALIDITY_MS + 1000)
  })

  test('two sessions get two different CAs', async () => {
    const other = await SessionCa.create('test-session')
    expect(other.certPem).not.toBe(ca.certPem)
  })
})

describe('leaf certificates', () => {
  test('SKI, AKI (= the CA key id), serverAuth EKU, exact DNS SAN, issued and signed by the CA', async () => {
    const leaf = await ca.leafFor('Api.Example.TEST')
    const cert = new X509Certificate(leaf.certPem)
    const caCert = new X509Certificate(ca.certPem)
    expect(cert.ca).toBe(false)
    expect(cert.subjectAltName).toBe('DNS:api.example.test')
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1'])
    expect(cert.checkIssued(caCert)).toBe(true)
    expect(cert.verify(caCert.publicKey)).toBe(true)
    const parsed = new x509.X509Certificate(leaf.certPem)
    const parsedCa = new x509.X509Certificate(ca.certPem)
    const ski = parsed.getExtension(x509.SubjectKeyIdentifierExtension)
    const aki = parsed.getExtension(x509.AuthorityKeyIdentifierExtension)
    const caSki = parsedCa.getExtension(x509.SubjectKeyIdentifierExtension)
    expect(ski?.keyId).toMatch(/^[0-9a-f]{40}$/)
    expect(aki?.keyId).toBe(caSki?.keyId)
    expect(cert.validTo).toBe(caCert.validTo)
  })

  test('an IP literal gets an IP SAN', async () => {
    const cert = new X509Certificate((await ca.leafFor('127.0.0.1')).certPem)
    expect(cert.subjectAltName).toBe('IP Address:127.0.0.1')
  })

  test('leaves are cached per name for the session', async () => {
    const first = await ca.leafFor('cache.example.test')
    const second = await ca.leafFor('cache.example.test')
    expect(second).toBe(first)
  })

  test('a Node TLS client trusting only the session CA verifies the leaf for its name, and refuses another name', async () => {
    const leaf = await ca.leafFor('tls.example.test')
    const server: Server = createServer({ cert: leaf.certPem, key: leaf.keyPem }, (socket) => socket.end('hi'))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as AddressInfo).port
    const attempt = (servername: string): Promise<string> =>
      new Promise((resolve) => {
        const socket = connect({ host: '127.0.0.1', port, servername, ca: ca.certPem }, () => {
          resolve('ok')
          socket.destroy()
        })
        socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'))
      })
    try {
      expect(await attempt('tls.example.test')).toBe('ok')
      expect(await attempt('other.example.test')).toBe('ERR_TLS_CERT_ALTNAME_INVALID')
    } finally {
      server.close()
    }
  })

  test.runIf(spawnSync('openssl', ['version']).status === 0)('openssl verify -x509_strict -purpose sslserver accepts the leaf', async () => {
    const leaf = await ca.leafFor('openssl.example.test')
    writeFileSync(join(dir, 'ca.pem'), ca.certPem)
    writeFileSync(join(dir, 'leaf.pem'), leaf.certPem)
    const out = execFileSync('openssl', ['verify', '-x509_strict', '-purpose', 'sslserver', '-verify_hostname', 'openssl.example.test', '-CAfile', join(dir, 'ca.pem'), join(dir, 'leaf.pem')], { encoding: 'utf8' })
    expect(out.trim()).toBe(`${join(dir, 'leaf.pem')}: OK`)
  })
})
