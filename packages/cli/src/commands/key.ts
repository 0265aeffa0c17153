// `credproxy key set|get|list|delete`: API keys in host storage (and, later, through
// the broker inside a sandbox). Values come from stdin or a hidden prompt, never argv.
import { isKeyName, isProxyMode, ProxyError } from '@credproxy/core/client'
import { writeLine, type CliIO, type Command } from '../cli-io.js'
import { EXIT } from '../exit-codes.js'
import { openCommandStores } from './stores.js'
import { CredproxyError, UsageError } from '../errors.js'
import { parseCommandLine, parseOptions } from './parse-options.js'

const help = `Usage: credproxy key <set|get|list|delete|source|migrate> [NAME] [options]

Store API keys on the host (OS keyring, or encrypted files without one).

Subcommands:
  set NAME        store a key; the value is read from stdin when piped, else
                  from a prompt that does not echo (never from the command line)
  get NAME        print the key's value (exit 3 when there is none)
  list [--json]   print the key names, never their values; a name served by a
                  source shows the source's kind and program name (not its
                  arguments)
  delete NAME     remove a key (exit 3 when there was none)
  source NAME [--json-output] [--ttl SECONDS] [--timeout MS] [--pass-env VAR]... -- PROGRAM [ARG...]
  source NAME --env VAR | --file PATH
                  serve NAME from a host command (run without a shell), a host
                  variable or a file, declared in <config>/sources.json; NAME
                  may be PROVIDER/BUCKET for an OAuth-style token. See
                  dev-docs/sources.md
  migrate --to keyring|file
                  move every API key and OAuth token to the other backend and
                  make it the saved choice (host only); each credential is
                  copied and read back before the old copy is deleted, so an
                  interruption leaves two copies, never none

Names: 1-64 characters from a-z A-Z 0-9 . _ -

Examples:
  credproxy key set OPENAI_API_KEY                  # prompts, input hidden
  printf %s "$TOKEN" | credproxy key set NPM_TOKEN
  OPENAI_API_KEY=$(credproxy key get OPENAI_API_KEY) my-tool
  credproxy key list --json
  credproxy key delete NPM_TOKEN
  credproxy key source GH_TOKEN --ttl 600 -- gh auth token
  credproxy key migrate --to keyring                # after a keyring became available`

const SUBCOMMANDS = ['set', 'get', 'list', 'delete', 'source', 'migrate'] as const

function validName(name: string | undefined, sub: string): string {
  if (name === undefined) throw new UsageError(`key ${sub} needs a NAME`, `Example: credproxy key ${sub} OPENAI_API_KEY`)
  if (!isKeyName(name)) {
    // `key set` never echoes its argument: someone may have typed the secret there.
    const shown = sub === 'set' ? 'the NAME given' : `'${name}'`
    throw new UsageError(`${shown} is not a valid key name`, 'Use 1-64 characters from a-z A-Z 0-9 . _ - (not __proto__, constructor, prototype)')
  }
  return name
}

/** The next step depends on where we are: inside a sandbox (backend broker) keys are set on the host only. */
function notFound(name: string, sub: 'get' | 'delete', backend: string): CredproxyError {
  const hint =
    sub === 'delete'
      ? 'Nothing was deleted; list the stored keys with: credproxy key list'
      : backend === 'broker'
        ? `Store it on the host (outside the sandbox) with: credproxy key set ${name}`
        : `Store one with: credproxy key set ${name}`
  return new CredproxyError('NOT_FOUND', `no API key named ${name}`, { hint: hint })
}

async function readValue(io: CliIO, name: string): Promise<string> {
  // Only `key set` reads a value: `key get` does not load the prompt code.
  const { promptHidden, readAllStdin } = await import('./secret-input.js')
  const value = io.stdin.isTTY === true ? await promptHidden(io, `Value for ${name} (input hidden): `) : await readAllStdin(io, 'the key value')
  if (value.trim() === '') {
    throw new UsageError(`the value for ${name} is empty; nothing was stored`, `Pipe the value: printf %s "$VALUE" | credproxy key set ${name}`)
  }
  return value
}

async function run(args: string[], io: CliIO): Promise<number> {
  const [sub, ...rest] = args
  if (sub === undefined || !(SUBCOMMANDS as readonly string[]).includes(sub)) {
    throw new UsageError(
      sub === undefined ? 'key needs a subcommand' : `unknown key subcommand '${sub}'`,
      'Run `credproxy key --help`: set, get, list, delete, source, migrate.',
    )
  }
  if (sub === 'set') {
    // Checked before parsing: parseArgs's messages would echo an argument that may be the secret.
    const [name, ...extra] = rest
    if (extra.length > 0 || name?.startsWith('-') === true) {
      throw new UsageError(
        'key set takes the value on stdin, not as an argument (arguments show in the process list and shell history)',
        `Pipe it: printf %s "$VALUE" | credproxy key set ${name !== undefined && isKeyName(name) ? name : 'NAME'}, or run it without a value to be prompted.`,
      )
    }
    const keyName = validName(name, 'set')
    const value = await readValue(io, keyName)
    const stores = await openCommandStores(io)
    await stores.keys.saveKey(keyName, value)
    writeLine(io.stderr, `Stored API key ${keyName} (${stores.backend}).`)
    return EXIT.OK
  }
  if (sub === 'migrate') return migrate(rest, io)
  if (sub === 'source') return source(rest, io)
  const { values, positionals } = parseCommandLine('key', rest, { json: { type: 'boolean' } })
  if (sub === 'list') {
    if (positionals.length > 0) throw new UsageError('key list takes no NAME', 'Run `credproxy key list`.')
    const stores = await openCommandStores(io)
    const sourced = stores.backend === 'broker' ? new Map<string, string>() : await declaredSources(io)
    const keys = [...new Set([...(await stores.keys.listKeys()), ...sourced.keys()])].sort()
    if (values.json === true) writeLine(io.stdout, JSON.stringify(sourced.size === 0 ? { keys } : { keys, sources: Object.fromEntries(sourced) }))
    else if (keys.length === 0) writeLine(io.stderr, 'No API keys stored. Add one with: credproxy key set NAME')
    else for (const key of keys) writeLine(io.stdout, sourced.has(key) ? `${key}  (source: ${sourced.get(key) ?? ''})` : key)
    return EXIT.OK
  }
  if (positionals.length > 1) throw new UsageError(`key ${sub} takes one NAME`, `Example: credproxy key ${sub} OPENAI_API_KEY`)
  const name = validName(positionals[0], sub)
  const stores = await openCommandStores(io)
  if (sub === 'get') {
    const value = await stores.keys.getKey(name)
    if (value === null) {
      // A sourced name is served by sessions, which run its source: say so rather than "no key".
      const sourced = stores.backend === 'broker' ? undefined : (await declaredSources(io)).get(name)
      if (sourced !== undefined) {
        throw new CredproxyError('NOT_FOUND', `${name} comes from a source (${sourced}), which sessions run; it is not stored`, { hint: 'Check the source with: credproxy doctor --run-sources' })
      }
      throw notFound(name, 'get', stores.backend)
    }
    writeLine(io.stdout, value)
    return EXIT.OK
  }
  let deleted: boolean
  try {
    deleted = await stores.keys.deleteKey(name)
  } catch (error) {
    if (error instanceof ProxyError && error.code === 'NOT_FOUND') throw notFound(name, 'delete', stores.backend)
    throw error
  }
  if (!deleted) throw notFound(name, 'delete', stores.backend)
  writeLine(io.stderr, `Deleted API key ${name}.`)
  return EXIT.OK
}

async function migrate(args: string[], io: CliIO): Promise<number> {
  if (isProxyMode(io.env)) {
    throw new UsageError('`credproxy key migrate` works on the host only, not inside a sandbox', 'Run it in a terminal on the host.')
  }
  const { to } = parseOptions('key migrate', args, { to: { type: 'string' } }, { hint: 'Example: credproxy key migrate --to keyring' })
  if (to !== 'keyring' && to !== 'file') throw new UsageError('key migrate needs --to keyring or --to file', 'Example: credproxy key migrate --to keyring')
  // Host storage code, loaded only for this subcommand (key get stays light).
  const [{ resolvePaths }, { LockDirectory }, { migrateCredentials }] = await Promise.all([
    import('../paths.js'),
    import('../storage/locks.js'),
    import('../storage/migrate.js'),
  ])
  const paths = resolvePaths(io.env)
  const locks = await LockDirectory.open(paths.stateDir, (line) => writeLine(io.stderr, line))
  const result = await migrateCredentials({ env: io.env, paths, locks, to, progress: (line) => writeLine(io.stderr, line) })
  writeLine(io.stderr, `Moved ${result.moved.length} credential(s) to the ${to === 'keyring' ? 'OS keyring' : 'encrypted files'}; it is now the saved backend.`)
  if (result.kept.length > 0) {
    writeLine(io.stderr, `The old copies of ${result.kept.join(', ')} were kept (changed meanwhile, or could not be deleted); run the command again to finish.`)
    return EXIT.FAILURE
  }
  return EXIT.OK
}

export const command: Command = { name: 'key', help, run }

/** Key names declared in sources.json, each with what a listing may show of its source. */
async function declaredSources(io: CliIO): Promise<Map<string, string>> {
  const [{ resolvePaths }, { describeSource, loadSourcesConfig }] = await Promise.all([import('../paths.js'), import('../credentials/sources-config.js')])
  const config = await loadSourcesConfig(resolvePaths(io.env))
  const out = new Map<string, string>()
  for (const [name, spec] of config?.keys ?? []) out.set(name, describeSource(spec))
  for (const [name, spec] of config?.tokens ?? []) out.set(name, describeSource(spec))
  return out
}

/** `key source NAME ... -- PROGRAM ARGS`: write one sources.json entry (the arguments stay on the host). */
async function source(args: string[], io: CliIO): Promise<number> {
  if (isProxyMode(io.env)) {
    throw new UsageError('`credproxy key source` works on the host only, not inside a sandbox', 'Run it in a terminal on the host.')
  }
  const dash = args.indexOf('--')
  const own = dash === -1 ? args : args.slice(0, dash)
  const command = dash === -1 ? [] : args.slice(dash + 1)
  const { values, positionals } = parseCommandLine(
    'key source',
    own,
    {
      env: { type: 'string' },
      file: { type: 'string' },
      'json-output': { type: 'boolean' },
      ttl: { type: 'string' },
      timeout: { type: 'string' },
      'pass-env': { type: 'string', multiple: true },
    },
    { hint: 'Example: credproxy key source GH_TOKEN --ttl 600 -- gh auth token' },
  )
  const [name, ...extra] = positionals
  if (name === undefined || extra.length > 0) {
    throw new UsageError('key source takes one NAME (or PROVIDER/BUCKET), then the command after --', 'Example: credproxy key source GH_TOKEN --ttl 600 -- gh auth token')
  }
  const kinds = [command.length > 0, values.env !== undefined, values.file !== undefined].filter(Boolean).length
  if (kinds !== 1) {
    throw new UsageError('give exactly one source: a command after --, --env VAR or --file PATH', 'Example: credproxy key source GH_TOKEN -- gh auth token')
  }
  const spec: Record<string, unknown> = {}
  if (command.length > 0) spec['command'] = command
  if (values.env !== undefined) spec['env'] = values.env
  if (values.file !== undefined) spec['file'] = values.file
  if (values['json-output'] === true) spec['output'] = 'json'
  const integer = (flag: string, value: string | undefined): number | undefined => {
    if (value === undefined) return undefined
    if (!/^\d+$/.test(value)) throw new UsageError(`--${flag} needs a whole number`, 'Example: --ttl 600')
    return Number(value)
  }
  const ttl = integer('ttl', values.ttl)
  if (ttl !== undefined) spec['ttl_seconds'] = ttl
  const timeout = integer('timeout', values.timeout)
  if (timeout !== undefined) spec['timeout_ms'] = timeout
  if (values['pass-env'] !== undefined) spec['pass_env'] = values['pass-env']
  const kind = name.includes('/') ? 'token' : 'key'
  if (kind === 'key') validName(name, 'source')
  const [{ resolvePaths }, { describeSource, writeSourceEntry }] = await Promise.all([import('../paths.js'), import('../credentials/sources-config.js')])
  const file = await writeSourceEntry(resolvePaths(io.env), kind, name, spec)
  writeLine(io.stderr, `${name} is now served from ${describeSource(spec as { command?: string[]; env?: string; file?: string })} (${file}); sessions started from now on use it.`)
  return EXIT.OK
}
