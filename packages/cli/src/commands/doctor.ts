// `credproxy doctor`: what this host can do and what is in the way, each problem
// with its fix. Read-only: it makes no backend choice, prunes nothing, prints no
// credential value (names only). Exit 1 when any check finds a problem.
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { statusMark, useColor, writeLine, type CliIO, type Command } from '../cli-io.js'
import { EXIT } from '../exit-codes.js'
import { readSource, SourceError } from '../credentials/source-runner.js'
import { describeSource, loadSourcesConfig } from '../credentials/sources-config.js'
import { loadProvidersConfig } from '../oauth/provider-config.js'
import { resolvePaths, type CredproxyPaths } from '../paths.js'
import { probeBwrap } from '../sandbox/bwrap.js'
import { buildKeyringSeccompFilter } from '../sandbox/seccomp.js'
import { processAlive, SessionRecordSchema, sessionsDir } from '../control/session-registry.js'
import { isSocketFile, isSocketLive, SESSION_ID_PATTERN, SOCKET_FILE_NAME } from '../control/socket-path.js'
import { backendChoicePath, keyringMode, keyringService, readBackendChoice, type BackendChoice } from '../storage/backend-selection.js'
import { fileRecordIds } from '../storage/index.js'
import { KeyringBackend } from '../storage/keyring-backend.js'
import { KeyringClient } from '../storage/keyring-client.js'
import { LockDirectory } from '../storage/locks.js'
import { recordId } from '../storage/record-backend.js'
import { findOnPath, installCommand } from '../system-deps.js'
import { CredproxyError } from '../errors.js'
import { safeParseJson } from '../json-file.js'
import { parseOptions } from './parse-options.js'

const help = `Usage: credproxy doctor [--json] [--run-sources]

Check this host, read-only, and print each problem with its fix:
  storage        which backend holds your credentials, and why
  keyring        whether an OS keyring (Secret Service) answers
  bubblewrap     whether bwrap is installed and can create user namespaces
  seccomp        whether this architecture has credproxy's keyring filter
  providers      whether providers.json (OAuth) parses
  sources        whether sources.json parses; with --run-sources, each source
                 is run once and its timing reported (never its value)
  credentials    stored key and token names (never values), and any the
                 backend in use cannot see
  sessions       stale session leftovers (reported; \`credproxy sessions\` prunes)

Exits 0 when nothing is wrong, 1 when a problem was found.

Options:
  --json          print {"ok","checks":[{"name","ok","detail","fix"}],"credentials"}
  --run-sources   run each credential source once (commands may prompt, e.g.
                  a biometric unlock); without it sources are only parsed

Examples:
  credproxy doctor
  credproxy doctor --json | jq '.checks[] | select(.ok == false)'`

export interface DoctorCheck {
  name: string
  ok: boolean
  detail: string
  fix?: string
}

interface Credentials {
  /** The backend commands use now (null before first use). */
  inUse: 'keyring' | 'file' | null
  keyring: string[] | null
  file: string[]
}

function check(name: string, ok: boolean, detail: string, fix?: string): DoctorCheck {
  return fix === undefined ? { name, ok, detail } : { name, ok, detail, fix }
}

function message(error: unknown): { detail: string; fix?: string } {
  if (error instanceof CredproxyError) return error.hint === undefined ? { detail: error.message } : { detail: error.message, fix: error.hint }
  return { detail: error instanceof Error ? error.message : String(error) }
}

async function storageChecks(io: CliIO, paths: CredproxyPaths, checks: DoctorCheck[]): Promise<Credentials> {
  const file = backendChoicePath(paths.configDir)
  let mode
  try {
    mode = keyringMode(io.env)
    keyringService(io.env)
  } catch (error) {
    const { detail, fix } = message(error)
    checks.push(check('storage', false, detail, fix))
    return { inUse: null, keyring: null, file: await fileRecordIds(paths.dataDir) }
  }
  let choice: BackendChoice | null = null
  let choiceError: DoctorCheck | null = null
  try {
    choice = await readBackendChoice(paths.configDir)
  } catch (error) {
    const { detail, fix } = message(error)
    choiceError = check('storage', false, detail, fix)
  }

  let keyringFailure: string | null = 'not checked (CREDPROXY_KEYRING=off)'
  let keyringNames: string[] | null = null
  if (mode !== 'off') {
    const keyring = new KeyringClient(keyringService(io.env))
    keyringFailure = await keyring.probe()
    if (keyringFailure === null) {
      const locks = await LockDirectory.open(paths.stateDir, (line) => writeLine(io.stderr, line))
      const backend = new KeyringBackend(keyring, locks)
      try {
        keyringNames = [...(await backend.list('token')), ...(await backend.list('key'))].map(recordId).sort()
      } catch (error) {
        const { detail, fix } = message(error)
        checks.push(check('keyring', false, detail, fix))
      }
    }
  }
  const fileNames = await fileRecordIds(paths.dataDir)
  const inUse: Credentials['inUse'] = mode === 'off' ? 'file' : mode === 'required' ? 'keyring' : (choice?.backend ?? null)

  if (choiceError !== null) checks.push(choiceError)
  else if (mode === 'off') checks.push(check('storage', true, `encrypted files in ${paths.dataDir} (CREDPROXY_KEYRING=off${choice?.backend === 'keyring' ? `, overriding the keyring saved in ${file}` : ''})`))
  else if (mode === 'required') checks.push(check('storage', true, 'OS keyring (CREDPROXY_KEYRING=required)'))
  else if (choice === null) {
    checks.push(check('storage', true, `not chosen yet: the first command will use ${keyringFailure === null && fileNames.length === 0 ? 'the OS keyring' : 'encrypted files'} and save that in ${file}`))
  } else {
    checks.push(check('storage', true, `${choice.backend === 'keyring' ? 'OS keyring' : `encrypted files in ${paths.dataDir}`} (saved in ${file})`))
  }

  const needKeyring = inUse === 'keyring'
  if (keyringFailure === null) {
    checks.push(check('keyring', true, `reachable (service ${keyringService(io.env)})${inUse === 'file' ? '; not in use: `credproxy key migrate --to keyring` moves your credentials there' : ''}`))
  } else if (mode === 'off') {
    checks.push(check('keyring', true, keyringFailure))
  } else {
    checks.push(
      check(
        'keyring',
        !needKeyring,
        `not reachable (${keyringFailure})${needKeyring ? '' : '; encrypted files are used instead'}`,
        needKeyring ? 'Start or unlock your Secret Service (e.g. gnome-keyring in a D-Bus session), or move to files once it answers: credproxy key migrate --to file' : undefined,
      ),
    )
  }
  return { inUse, keyring: keyringNames, file: fileNames }
}

function credentialCheck(creds: Credentials): DoctorCheck {
  const shown = (ids: string[]): string => (ids.length === 0 ? 'none' : ids.join(', '))
  if (creds.inUse === null) {
    return check('credentials', true, `encrypted files: ${shown(creds.file)}${creds.keyring === null ? '' : `; keyring: ${shown(creds.keyring)}`}`)
  }
  const inUse = creds.inUse === 'keyring' ? (creds.keyring ?? []) : creds.file
  const other = creds.inUse === 'keyring' ? creds.file : (creds.keyring ?? [])
  const detail = `${creds.inUse === 'keyring' ? 'keyring' : 'encrypted files'}: ${shown(inUse)}`
  if (other.length === 0) return check('credentials', true, detail)
  return check(
    'credentials',
    false,
    `${detail}; ${other.length} more in the ${creds.inUse === 'keyring' ? 'encrypted files' : 'keyring'} that commands do not see: ${other.join(', ')}`,
    `credproxy key migrate --to ${creds.inUse}`,
  )
}

function sandboxChecks(io: CliIO): DoctorCheck[] {
  const checks: DoctorCheck[] = []
  const problem = probeBwrap(io.env)
  if (problem === null) checks.push(check('bubblewrap', true, 'bwrap runs and can create user namespaces'))
  else if (findOnPath('bwrap', io.env) === null) {
    checks.push(check('bubblewrap', false, 'bwrap is not installed (`credproxy run` and `credproxy demo` sandbox with it)', installCommand(['bubblewrap'], io.env)))
  } else {
    checks.push(check('bubblewrap', false, problem, 'Enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, or kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu 24.04), or use --sandbox docker|podman'))
  }
  const filter = buildKeyringSeccompFilter(process.arch)
  checks.push(
    filter === null
      ? check('seccomp', false, `no keyring seccomp filter for ${process.arch}: bwrap sandboxes are refused`, 'Use --sandbox docker or podman on this machine')
      : check('seccomp', true, `keyring filter for ${process.arch} (${filter.length / 8} instructions)`),
  )
  return checks
}

async function providersCheck(paths: CredproxyPaths): Promise<DoctorCheck> {
  try {
    const config = await loadProvidersConfig(paths)
    if (config === null) return check('providers', true, 'no providers.json (needed only for `credproxy auth login`; see `credproxy help oauth`)')
    const names = [...config.providers.keys()]
    return check('providers', true, `${config.file}: ${names.length === 0 ? 'no providers' : names.join(', ')}`)
  } catch (error) {
    const { detail, fix } = message(error)
    return check('providers', false, detail, fix)
  }
}

/** sources.json parses; with run, each source is read once: timing and outcome, never the value. */
async function sourcesChecks(io: CliIO, paths: CredproxyPaths, run: boolean): Promise<DoctorCheck[]> {
  let config
  try {
    config = await loadSourcesConfig(paths)
  } catch (error) {
    const { detail, fix } = message(error)
    return [check('sources', false, detail, fix)]
  }
  // Most hosts have no sources.json: no line for it.
  if (config === null) return []
  const all = [...config.keys.values(), ...config.tokens.values()]
  const listed = all.map((s) => `${s.name} (${describeSource(s)})`).join(', ')
  const checks = [check('sources', true, `${config.file}: ${all.length === 0 ? 'no sources' : listed}${run || all.length === 0 ? '' : '; run them once with --run-sources'}`)]
  if (!run) return checks
  for (const source of all) {
    const started = performance.now()
    try {
      const read = await readSource(source, { env: io.env })
      const ms = Math.round(performance.now() - started)
      const expiry = read.expiresAt === undefined ? '' : `, expires ${new Date(read.expiresAt).toISOString()}`
      checks.push(check(`source ${source.name}`, true, `${describeSource(source)}: a value of ${read.value.length} characters in ${ms} ms${expiry}`))
    } catch (error) {
      const ms = Math.round(performance.now() - started)
      // The runner's messages start with "source NAME (program)": the check's name and prefix say that already.
      const detail = (error instanceof SourceError ? error.message : String(error)).replace(/^source \S+ \([^)]*\) /, '')
      // The command's stderr is for the user at this terminal (the host), cut to one line.
      const stderr = error instanceof SourceError && error.stderr !== '' ? `; stderr: ${error.stderr.split('\n')[0]?.slice(0, 200) ?? ''}` : ''
      checks.push(check(`source ${source.name}`, false, `${describeSource(source)}: ${detail} after ${ms} ms${stderr}`, `Run the command by hand on the host, or fix its entry in ${config.file}`))
    }
  }
  return checks
}

/** Stale registry entries and session directories, found without removing any. */
async function sessionsCheck(paths: CredproxyPaths): Promise<DoctorCheck> {
  const stale: string[] = []
  let live = 0
  const liveIds = new Set<string>()
  const registry = await readdir(sessionsDir(paths)).catch(() => [] as string[])
  for (const name of registry) {
    if (!name.endsWith('.json')) continue
    const text = await readFile(join(sessionsDir(paths), name), 'utf8').catch(() => null)
    const record = text === null ? null : safeParseJson(text, SessionRecordSchema)
    if (record?.ok !== true) continue
    if (processAlive(record.value.pid) && (await isSocketFile(record.value.controlSocketPath))) {
      live += 1
      liveIds.add(record.value.id)
    } else stale.push(`session ${record.value.id} (pid ${record.value.pid} is gone)`)
  }
  const runtime = await readdir(paths.runtimeDir, { withFileTypes: true }).catch(() => [])
  for (const entry of runtime) {
    if (!entry.isDirectory() || !SESSION_ID_PATTERN.test(entry.name) || liveIds.has(entry.name)) continue
    const socket = join(paths.runtimeDir, entry.name, SOCKET_FILE_NAME)
    if ((await isSocketFile(socket)) && !(await isSocketLive(socket))) stale.push(`directory ${join(paths.runtimeDir, entry.name)} (dead socket)`)
  }
  const running = `${live} running`
  if (stale.length === 0) return check('sessions', true, `${running}, no stale leftovers`)
  return check('sessions', false, `${running}; left by a credproxy that was killed: ${stale.join('; ')}`, 'credproxy sessions (it removes them)')
}

async function run(args: string[], io: CliIO): Promise<number> {
  const values = parseOptions('doctor', args, { json: { type: 'boolean' }, 'run-sources': { type: 'boolean' } })
  const json = values.json === true
  const runSources = values['run-sources'] === true
  const paths = resolvePaths(io.env)
  const checks: DoctorCheck[] = []
  const creds = await storageChecks(io, paths, checks)
  checks.push(credentialCheck(creds))
  checks.push(...sandboxChecks(io))
  checks.push(await providersCheck(paths))
  checks.push(...(await sourcesChecks(io, paths, runSources)))
  checks.push(await sessionsCheck(paths))
  const problems = checks.filter((c) => !c.ok).length
  if (json) {
    writeLine(io.stdout, JSON.stringify({ ok: problems === 0, checks, credentials: creds }))
  } else {
    const color = useColor(io.stdout, io.env)
    const mark = (ok: boolean): string => statusMark(ok, color)
    for (const c of checks) {
      writeLine(io.stdout, `${mark(c.ok)} ${c.name.padEnd(11)} ${c.detail}`)
      if (c.fix !== undefined && !c.ok) writeLine(io.stdout, `  ${''.padEnd(11)} fix: ${c.fix}`)
    }
    writeLine(io.stdout, problems === 0 ? 'No problems found.' : `${problems} problem(s) found.`)
  }
  return problems === 0 ? EXIT.OK : EXIT.FAILURE
}

export const command: Command = { name: 'doctor', help, run }
