// `credproxy run --egress kube:CONTEXT`: an egress rule made from the host's own
// kubeconfig context (read with `kubectl config view --raw --minify`). The host
// keeps the cluster's client certificate, key and token in memory and presents them
// upstream; the sandbox gets a kubeconfig whose server is the rule's reverse route.
import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { UsageError } from '../errors.js'
import { EgressRuleSchema, type EgressRule } from '../egress/index.js'

const exec = promisify(execFile)
/** How long `kubectl config view` may take. */
export const KUBECTL_CONFIG_TIMEOUT_MS = 10_000
export const KUBE_PREFIX = 'kube:'

interface KubeConfigView {
  clusters?: Array<{ cluster?: { server?: string; 'certificate-authority-data'?: string; 'insecure-skip-tls-verify'?: boolean } }>
  users?: Array<{ user?: { token?: string; 'client-certificate-data'?: string; 'client-key-data'?: string; exec?: unknown; 'auth-provider'?: unknown } }>
}

export interface KubeEgress {
  rule: EgressRule
  /** Credential names the rule uses -> values, served from memory (never stored, never inside). */
  secrets: Map<string, string>
  /** The kubeconfig the sandbox gets (server = the route), written into the session directory. */
  writeInsideConfig(dir: string, routeBase: string, placeholder: string | undefined): Promise<string>
}

/** `kube:prod` -> rule name `kube-prod` (rule names have no colon). */
export function kubeRuleName(context: string): string {
  return `kube-${context.replace(/[^A-Za-z0-9._-]/g, '_')}`.slice(0, 64)
}

/** The rule for a host kubeconfig context; caDir receives the cluster CA file the proxy verifies with. */
export async function kubeEgressFor(context: string, env: NodeJS.ProcessEnv, caDir: string): Promise<KubeEgress> {
  let view: KubeConfigView
  try {
    const { stdout } = await exec('kubectl', ['config', 'view', '--raw', '--minify', '--flatten', '-o', 'json', '--context', context], {
      env,
      timeout: KUBECTL_CONFIG_TIMEOUT_MS,
      maxBuffer: 4 * 1024 * 1024,
    })
    view = JSON.parse(stdout) as KubeConfigView
  } catch (error) {
    const detail = (error as { stderr?: string }).stderr?.trim().split('\n')[0] ?? (error as Error).message
    throw new UsageError(`--egress kube:${context}: cannot read that context from your kubeconfig (${detail.slice(0, 200)})`, 'List contexts with `kubectl config get-contexts`; kubectl must be installed on the host.')
  }
  const cluster = view.clusters?.[0]?.cluster
  const user = view.users?.[0]?.user ?? {}
  const server = cluster?.server === undefined ? null : new URL(cluster.server)
  if (server === null || server.protocol !== 'https:') {
    throw new UsageError(`--egress kube:${context}: the cluster server is not an https URL`, 'credproxy injects cluster credentials over HTTPS only.')
  }
  if (user.exec !== undefined || user['auth-provider'] !== undefined) {
    throw new UsageError(`--egress kube:${context}: the user authenticates with an exec or auth-provider plugin, which credproxy cannot run on the host yet`, 'Use a context with a client certificate or a token.')
  }
  if (cluster?.['insecure-skip-tls-verify'] === true) {
    throw new UsageError(`--egress kube:${context}: the cluster skips TLS verification`, 'credproxy injects credentials only over verified TLS: add the cluster CA to the context.')
  }
  const name = kubeRuleName(context)
  const host = server.hostname.replace(/^\[|\]$/g, '')
  const secrets = new Map<string, string>()
  const tokenKey = `${name}.token`
  const hasToken = user.token !== undefined && user.token !== ''
  // Without a token the rule only presents the client certificate: nothing is injected or swapped.
  secrets.set(tokenKey, hasToken ? (user.token as string) : '')
  let clientCert: { cert: string; key: string } | undefined
  if (user['client-certificate-data'] !== undefined && user['client-key-data'] !== undefined) {
    clientCert = { cert: `${name}.cert`, key: `${name}.key` }
    secrets.set(clientCert.cert, Buffer.from(user['client-certificate-data'], 'base64').toString('utf8'))
    secrets.set(clientCert.key, Buffer.from(user['client-key-data'], 'base64').toString('utf8'))
  }
  if (!hasToken && clientCert === undefined) {
    throw new UsageError(`--egress kube:${context}: the user has neither a token nor a client certificate`, 'Use a context with a client certificate or a token.')
  }
  let ca: string | undefined
  const caData = cluster?.['certificate-authority-data']
  if (caData !== undefined) {
    ca = join(caDir, `${name}-ca.pem`)
    await writeFile(ca, Buffer.from(caData, 'base64'), { mode: 0o644 })
  }
  const rule = EgressRuleSchema.parse({
    name,
    hosts: [host],
    credential: { key: tokenKey },
    inject: hasToken ? { header: 'authorization', format: 'Bearer {}' } : { swapOnly: true },
    route: `/${name}`,
    upstream: `${server.hostname}:${server.port === '' ? 443 : server.port}`,
    ...(ca === undefined ? {} : { ca }),
    ...(clientCert === undefined ? {} : { clientCert }),
  })
  return {
    rule,
    secrets,
    async writeInsideConfig(dir, routeBase, placeholder) {
      const file = join(dir, `${name}.kubeconfig`)
      // JSON is YAML: kubectl reads it. At most the placeholder: the host presents the real credentials on the route.
      const config = {
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: context, cluster: { server: `${routeBase}/${name}` } }],
        users: [{ name: context, user: hasToken && placeholder !== undefined ? { token: placeholder } : {} }],
        contexts: [{ name: context, context: { cluster: context, user: context } }],
        'current-context': context,
      }
      await writeFile(file, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o644 })
      return file
    },
  }
}
