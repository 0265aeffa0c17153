// egress.json: errors name the file and the field; presets parse and can be
// replaced or disabled; host patterns match exactly or by *.suffix.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, test } from 'vitest'
import { CredproxyError } from '../src/errors.js'
import { EGRESS_PRESETS } from '../src/egress/presets.js'
import { findRule, hostMatches, injectFor, loadEgressRules, parseEgressRules, presetRules } from '../src/egress/rules.js'

const dir = mkdtempSync(join(tmpdir(), 'cp-egress-rules-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const FILE = '/cfg/egress.json'
const valid = { name: 'svc', hosts: ['api.svc.test'], credential: { key: 'SVC_KEY' }, inject: { header: 'Authorization', format: 'Bearer {}' } }

function errorOf(json: unknown): CredproxyError {
  try {
    parseEgressRules(typeof json === 'string' ? json : JSON.stringify(json), FILE)
  } catch (error) {
    if (error instanceof CredproxyError) return error
    throw error
  }
  throw new Error('expected a CredproxyError')
}

describe('parse errors name the file and the field', () => {
  test.each([
    [{ rules: [{ ...valid, name: 'bad name!' }] }, 'rules.0.name'],
    [{ rules: [{ ...valid, hosts: [] }] }, 'rules.0.hosts'],
    [{ rules: [{ ...valid, hosts: ['http://x.test'] }] }, 'rules.0.hosts.0'],
    [{ rules: [{ ...valid, credential: { key: 'has space' } }] }, 'rules.0.credential'],
    [{ rules: [{ ...valid, inject: { header: 'x-api-key', format: 'no slot' } }] }, 'rules.0.inject'],
    [{ rules: [{ ...valid, route: 'github' }] }, 'rules.0.route'],
    [{ rules: [{ ...valid, upstream: '127.0.0.1' }] }, 'rules.0.upstream'],
    [{ rules: [{ ...valid, placeholder: { prefix: 'ghp_', length: 20 } }] }, 'rules.0.placeholder.length'],
    [{ rules: [{ ...valid, extra: 1 }] }, 'rules.0'],
    [{ rules: [valid, valid] }, 'rules.1.name'],
    // run --egress sets these itself: a rule must not replace the proxy, the trust or what programs load.
    [{ rules: [{ ...valid, env: ['HTTPS_PROXY'] }] }, 'rules.0.env.0'],
    [{ rules: [{ ...valid, env: ['NODE_OPTIONS'] }] }, 'rules.0.env.0'],
    [{ rules: [{ ...valid, env: ['LD_PRELOAD'] }] }, 'rules.0.env.0'],
    [{ rules: [{ ...valid, env: ['CREDPROXY_SOCKET'] }] }, 'rules.0.env.0'],
    [{ rules: [{ ...valid, env: ['has-dash'] }] }, 'rules.0.env.0'],
    [{ rules: [{ ...valid, baseUrlEnv: 'SVC_BASE_URL' }] }, 'rules.0.baseUrlEnv'],
  ])('%j -> %s', (json, field) => {
    const error = errorOf(json)
    expect(error.message).toContain(FILE)
    expect(error.message).toContain(`invalid field ${field}`)
  })

  test('invalid JSON names the file and the position, never the text', () => {
    const error = errorOf('{"rules": [ {"name": "secret-ish-value"')
    expect(error.message).toContain(FILE)
    expect(error.message).not.toContain('secret-ish-value')
  })

  test('two rules with one route are refused', () => {
    const error = errorOf({ rules: [{ ...valid, route: '/svc' }, { ...valid, name: 'svc2', route: '/svc' }] })
    expect(error.message).toContain('/svc')
  })
})

describe('presets', () => {
  test('every preset parses and the issue list is covered', () => {
    const names = presetRules().map((rule) => rule.name)
    expect(names).toEqual(expect.arrayContaining(['github', 'anthropic', 'openai', 'pagerduty', 'sentry', 'npm', 'docker', 'gitlab']))
    expect(names).toHaveLength(Object.keys(EGRESS_PRESETS).length)
  })

  test('GitHub: Bearer on the API, Basic x-access-token for git on github.com', () => {
    const github = presetRules().find((rule) => rule.name === 'github')
    if (github === undefined) throw new Error('no github preset')
    expect(injectFor(github, 'api.github.com')).toEqual({ header: 'authorization', format: 'Bearer {}' })
    expect(injectFor(github, 'github.com')).toEqual({ basic: { user: 'x-access-token' } })
  })

  test('the service-specific formats', () => {
    const byName = new Map(presetRules().map((rule) => [rule.name, rule]))
    expect(byName.get('anthropic')?.inject).toEqual({ header: 'x-api-key', format: '{}' })
    expect(byName.get('pagerduty')?.inject).toEqual({ header: 'authorization', format: 'Token token={}' })
    expect(byName.get('gitlab')?.inject).toEqual({ header: 'private-token', format: '{}' })
    const docker = byName.get('docker')
    if (docker === undefined) throw new Error('no docker preset')
    expect(injectFor(docker, 'auth.docker.io')).toEqual({ basic: {} })
    expect(injectFor(docker, 'registry-1.docker.io')).toEqual({ swapOnly: true })
  })

  test('a missing egress.json means presets only; a user rule replaces a preset; disablePresets drops one', async () => {
    expect((await loadEgressRules(dir)).map((rule) => rule.name).sort()).toEqual(Object.keys(EGRESS_PRESETS).sort())
    writeFileSync(
      join(dir, 'egress.json'),
      JSON.stringify({ disablePresets: ['sentry'], rules: [{ ...valid, name: 'github', hosts: ['ghe.example.test'] }, valid] }),
    )
    const rules = await loadEgressRules(dir)
    expect(rules.find((rule) => rule.name === 'github')?.hosts).toEqual(['ghe.example.test'])
    expect(rules.some((rule) => rule.name === 'sentry')).toBe(false)
    expect(rules.find((rule) => rule.name === 'svc')?.inject).toEqual({ header: 'authorization', format: 'Bearer {}' })
  })

  test("a user rule covering a preset's host wins over the preset when both are granted", () => {
    const rules = parseEgressRules(JSON.stringify({ rules: [{ ...valid, name: 'mine', hosts: ['api.openai.com'] }] }), FILE)
    expect(findRule(rules, new Set(['openai', 'mine']), 'api.openai.com')?.name).toBe('mine')
  })
})

describe('host matching', () => {
  test('exact and *.suffix', () => {
    expect(hostMatches('api.github.com', 'api.github.com')).toBe(true)
    expect(hostMatches('api.github.com', 'xapi.github.com')).toBe(false)
    expect(hostMatches('*.example.com', 'a.example.com')).toBe(true)
    expect(hostMatches('*.example.com', 'a.b.example.com')).toBe(true)
    expect(hostMatches('*.example.com', 'example.com')).toBe(false)
    expect(hostMatches('*.example.com', 'evilexample.com')).toBe(false)
  })

  test('a rule is found only when granted', () => {
    const rules = presetRules()
    expect(findRule(rules, new Set(), 'api.github.com')).toBeUndefined()
    expect(findRule(rules, new Set(['github']), 'api.github.com')?.name).toBe('github')
  })
})
