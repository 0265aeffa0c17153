// SessionGrants: decisions from grants alone, wildcard rules, runtime changes.
import { describe, expect, test } from 'vitest'
import { parseProviderGrant, SessionGrants } from '../src/broker/grants.js'

const grants = () =>
  new SessionGrants('sess-1234abcd', {
    providers: [{ provider: 'anthropic', buckets: ['work'] }, { provider: 'gemini' }],
    keys: ['OPENAI_API_KEY'],
    capabilities: ['read'],
  })

describe('SessionGrants', () => {
  test('provider, bucket, key and capability decisions', () => {
    const g = grants()
    expect(g.checkProvider('anthropic', 'work', 'read')).toEqual({ ok: true })
    expect(g.checkProvider('anthropic', 'default', 'read')).toMatchObject({ ok: false, message: expect.stringContaining('--grant anthropic:default') })
    expect(g.checkProvider('gemini', 'any-bucket', 'read')).toEqual({ ok: true })
    expect(g.checkProvider('openai', 'default', 'read')).toMatchObject({ ok: false, message: expect.stringContaining('credproxy grant --session sess-1234abcd --provider openai') })
    expect(g.checkProvider('gemini', 'default', 'save')).toMatchObject({ ok: false, message: expect.stringContaining('capability save') })
    expect(g.checkKey('OPENAI_API_KEY')).toEqual({ ok: true })
    expect(g.checkKey('GITHUB_TOKEN')).toMatchObject({ ok: false })
  })

  test('a refused save names the flag run and serve accept (--allow-save), and the grant command; login has no start flag', () => {
    const save = grants().checkProvider('gemini', 'default', 'save')
    expect(save).toEqual({
      ok: false,
      message: 'capability save is not granted to this session; start it with --allow-save or run `credproxy grant --session sess-1234abcd --capability save` on the host',
    })
    expect(grants().checkProvider('gemini', 'default', 'login')).toEqual({
      ok: false,
      message: 'capability login is not granted to this session; run `credproxy grant --session sess-1234abcd --capability login` on the host',
    })
  })

  test('filters show granted names only', () => {
    const g = grants()
    expect(g.filterProviders(['anthropic', 'gemini', 'openai'])).toEqual(['anthropic', 'gemini'])
    expect(g.filterBuckets('anthropic', ['default', 'work'])).toEqual(['work'])
    expect(g.filterKeys(['A', 'OPENAI_API_KEY'])).toEqual(['OPENAI_API_KEY'])
  })

  test("'*' grants every provider and key", () => {
    const g = new SessionGrants('sess-1234abcd', { providers: [{ provider: '*' }], keys: ['*'], capabilities: ['read', 'login'] })
    expect(g.checkProvider('anything', 'b', 'login')).toEqual({ ok: true })
    expect(g.filterKeys(['X', 'Y'])).toEqual(['X', 'Y'])
  })

  test('grant and revoke change decisions; snapshot reflects them', () => {
    const g = grants()
    g.grant({ providers: [{ provider: 'anthropic', buckets: ['default'] }], keys: ['GITHUB_TOKEN'], capabilities: ['save'] })
    expect(g.checkProvider('anthropic', 'default', 'save')).toEqual({ ok: true })
    g.revoke({ providers: [{ provider: 'anthropic', buckets: ['work'] }], keys: ['OPENAI_API_KEY'] })
    expect(g.snapshot()).toEqual({
      providers: [{ provider: 'anthropic', buckets: ['default'] }, { provider: 'gemini' }],
      keys: ['GITHUB_TOKEN'],
      capabilities: ['read', 'save'],
    })
    expect(() => g.revoke({ providers: [{ provider: 'gemini', buckets: ['x'] }] })).toThrow('revoke the provider')
    g.revoke({ providers: [{ provider: 'gemini' }] })
    expect(g.filterProviders(['gemini'])).toEqual([])
  })

  test('invalid names are rejected at the edge', () => {
    expect(() => grants().grant({ keys: ['bad key!'] })).toThrow()
    expect(() => parseProviderGrant('anthropic:../x')).toThrow()
    expect(parseProviderGrant('anthropic:work')).toEqual({ provider: 'anthropic', buckets: ['work'] })
  })
})
