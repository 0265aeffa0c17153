// Public API of @credproxy/cli for embedders: host stores, the server, launchers.
export { main } from './cli.js'
export { resolvePaths, type CredproxyPaths } from './paths.js'
