// Built-in egress rules for common services. Each names the host store key (or
// OAuth provider) it injects; a user rule of the same name in egress.json replaces it,
// and `disablePresets` leaves one out. A preset is live only in a session granted it.
import type { EgressRuleInput } from './rules.js'

export const EGRESS_PRESETS: Record<string, EgressRuleInput> = {
  // One rule for the API and git over HTTPS, so gh and git share one placeholder:
  // api.github.com takes a Bearer token, github.com (git smart HTTP) takes Basic x-access-token.
  github: {
    name: 'github',
    hosts: ['api.github.com', 'github.com', 'uploads.github.com'],
    credential: { key: 'GITHUB_TOKEN' },
    env: ['GH_TOKEN', 'GITHUB_TOKEN'],
    inject: { header: 'authorization', format: 'Bearer {}' },
    hostInject: { 'github.com': { basic: { user: 'x-access-token' } } },
    route: '/github',
    // gh checks a token's shape: ghp_ + 36 characters.
    placeholder: { prefix: 'ghp_', length: 40 },
  },
  anthropic: {
    name: 'anthropic',
    hosts: ['api.anthropic.com'],
    credential: { key: 'ANTHROPIC_API_KEY' },
    env: ['ANTHROPIC_API_KEY'],
    baseUrlEnv: 'ANTHROPIC_BASE_URL',
    inject: { header: 'x-api-key', format: '{}' },
    route: '/anthropic',
    placeholder: { prefix: 'sk-ant-api03-' },
  },
  openai: {
    name: 'openai',
    hosts: ['api.openai.com'],
    credential: { key: 'OPENAI_API_KEY' },
    env: ['OPENAI_API_KEY'],
    baseUrlEnv: 'OPENAI_BASE_URL',
    inject: { header: 'authorization', format: 'Bearer {}' },
    route: '/openai',
    placeholder: { prefix: 'sk-proj-' },
  },
  pagerduty: {
    name: 'pagerduty',
    hosts: ['api.pagerduty.com'],
    credential: { key: 'PAGERDUTY_TOKEN' },
    env: ['PAGERDUTY_TOKEN'],
    inject: { header: 'authorization', format: 'Token token={}' },
    route: '/pagerduty',
  },
  sentry: {
    name: 'sentry',
    hosts: ['sentry.io', 'us.sentry.io', 'de.sentry.io'],
    credential: { key: 'SENTRY_AUTH_TOKEN' },
    env: ['SENTRY_AUTH_TOKEN'],
    inject: { header: 'authorization', format: 'Bearer {}' },
    route: '/sentry',
    placeholder: { prefix: 'sntrys_' },
  },
  npm: {
    name: 'npm',
    hosts: ['registry.npmjs.org'],
    credential: { key: 'NPM_TOKEN' },
    env: ['NPM_TOKEN'],
    inject: { header: 'authorization', format: 'Bearer {}' },
    route: '/npm',
    placeholder: { prefix: 'npm_' },
  },
  // Docker Hub: the client trades user:token (Basic) at auth.docker.io for a short-lived
  // pull/push token and sends that to registry-1 itself; only the exchange carries our secret.
  docker: {
    name: 'docker',
    hosts: ['auth.docker.io', 'registry-1.docker.io'],
    credential: { key: 'DOCKER_HUB_TOKEN' },
    inject: { swapOnly: true },
    hostInject: { 'auth.docker.io': { basic: {} } },
    placeholder: { prefix: 'dckr_pat_' },
  },
  gitlab: {
    name: 'gitlab',
    hosts: ['gitlab.com'],
    credential: { key: 'GITLAB_TOKEN' },
    env: ['GITLAB_TOKEN'],
    inject: { header: 'private-token', format: '{}' },
    route: '/gitlab',
    placeholder: { prefix: 'glpat-' },
  },
}
