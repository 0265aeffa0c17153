// `npm run bench`: runs every bench module (bench/*.bench.ts), or those named on argv.
// Each module exports `run(): Promise<void>` and prints its own table.
import { readdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'

const dir = fileURLToPath(new URL('.', import.meta.url))
const wanted = process.argv.slice(2)
const files = (await readdir(dir)).filter((f) => f.endsWith('.bench.ts')).sort()
for (const file of files) {
  const name = file.replace(/\.bench\.ts$/, '')
  if (wanted.length > 0 && !wanted.includes(name)) continue
  console.log(`\n## ${name}`)
  const mod = (await import(`./${file}`)) as { run: () => Promise<void> }
  await mod.run()
}
