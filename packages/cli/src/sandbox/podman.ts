// podman backend: the shared container builder plus --userns=keep-id, so the
// host uid owns the files written into the working directory.
import { buildContainerArgs, type ContainerIdentity } from './container.js'
import type { SandboxRequest } from './types.js'

export function buildPodmanArgs(
  request: SandboxRequest,
  options: { secretDir: string; name: string; tty: boolean; identity: ContainerIdentity },
): string[] {
  return buildContainerArgs('podman', request, options)
}
