// `credproxy completion bash|zsh|fish`: generated from the command table and each
// command's --help. The bash script is loaded into a real bash, which is asked to
// complete words the way it does at a prompt (COMP_WORDS/COMP_CWORD, then the function).
import { spawnSync } from 'node:child_process'
import { describe, expect, test } from 'vitest'
import { COMMANDS } from '../src/commands/index.js'
import { EXIT } from '../src/exit-codes.js'
import { runCli } from './helpers/cli-runner.js'

const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin' }

async function script(shell: string): Promise<string> {
  const result = await runCli(['completion', shell], { env })
  expect(result.code).toBe(EXIT.OK)
  expect(result.stderr).toBe('')
  return result.stdout
}

/** What bash offers for the command line `line` (the cursor at its end) with the generated script loaded. */
function bashComplete(generated: string, line: string): string[] {
  const words = line.split(' ')
  const program = `
source /dev/stdin <<'CREDPROXY_COMPLETION'
${generated}
CREDPROXY_COMPLETION
spec=$(complete -p credproxy) || exit 3
fn=\${spec#*-F }; fn=\${fn%% *}
COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')})
COMP_CWORD=${words.length - 1}
COMP_LINE='${line}'
COMP_POINT=\${#COMP_LINE}
"$fn" credproxy "\${COMP_WORDS[COMP_CWORD]}" "\${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\\n' "\${COMPREPLY[@]}"
`
  const result = spawnSync('bash', ['--norc', '--noprofile', '-c', program], { encoding: 'utf8' })
  expect(result.stderr).toBe('')
  expect(result.status).toBe(0)
  return result.stdout.split('\n').filter(Boolean).sort()
}

describe('credproxy completion', () => {
  test('bash completes commands, subcommands, options and help topics', async () => {
    const generated = await script('bash')
    expect(bashComplete(generated, 'credproxy ke')).toEqual(['key'])
    expect(bashComplete(generated, 'credproxy ')).toEqual(expect.arrayContaining(Object.keys(COMMANDS)))
    expect(bashComplete(generated, 'credproxy key mi')).toEqual(['migrate'])
    expect(bashComplete(generated, 'credproxy key migrate --to')).toEqual(['--to'])
    expect(bashComplete(generated, 'credproxy run --grant')).toEqual(['--grant', '--grant-all', '--grant-key'])
    expect(bashComplete(generated, 'credproxy auth login github --fl')).toEqual(['--flow'])
    // Option values spelled out in --help (`--to keyring|file`, `--flow device|pkce`).
    expect(bashComplete(generated, 'credproxy key migrate --to k')).toEqual(['keyring'])
    expect(bashComplete(generated, 'credproxy auth login github --flow ')).toEqual(['device', 'pkce'])
    expect(bashComplete(generated, 'credproxy help oa')).toEqual(['oauth'])
    expect(bashComplete(generated, 'credproxy completion z')).toEqual(['zsh'])
    // After `--` the words are the wrapped command's: nothing of ours is offered.
    expect(bashComplete(generated, 'credproxy run -- --gr')).toEqual([])
  })

  test('zsh and fish scripts name every command; zsh/fish parse them when installed', async () => {
    const zsh = await script('zsh')
    const fish = await script('fish')
    for (const name of Object.keys(COMMANDS)) {
      expect(zsh).toContain(`'${name}:`)
      expect(fish).toContain(`-a ${name} -d '`)
    }
    expect(fish).toContain("-n '__fish_seen_subcommand_from key' -l to")
    // Syntax check with the real shells where this machine has them.
    for (const [shell, text] of [['zsh', zsh], ['fish', fish]] as const) {
      if (spawnSync(shell, ['--version']).status !== 0) continue
      const check = spawnSync(shell, ['-n'], { input: text, encoding: 'utf8' })
      expect(check.stderr).toBe('')
      expect(check.status).toBe(0)
    }
  })

  test('an unknown shell is a usage error naming the choices', async () => {
    const result = await runCli(['completion', 'tcsh'], { env })
    expect(result.code).toBe(EXIT.USAGE)
    expect(result.stderr).toContain("no completion for 'tcsh'; choose bash, zsh or fish")
  })
})
