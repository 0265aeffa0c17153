// docker backend: the shared container builder with docker's user mapping.
import { buildContainerArgs, type ContainerIdentity } from './container.js'
import type { SandboxRequest } from './types.js'

export function buildDockerArgs(
  request: SandboxRequest,
  options: { secretDir: string; name: string; tty: boolean; identity: ContainerIdentity },
): string[] {
  return buildContainerArgs('docker', request, options)
}
