#!/usr/bin/env bash
# The test command (README, .ci/run): installs what a fresh machine lacks, builds,
# lints, runs every test project inside a real Secret Service session, and fails
# when no test ran (vitest exits 0 on an empty collection).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-fund --no-audit
fi
npm run build
npm run lint
results=$(mktemp)
trap 'rm -f "$results"' EXIT
status=0
bash scripts/with-secret-service.sh npx vitest run --reporter=default --reporter=json --outputFile="$results" "$@" || status=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))
  const failed = r.numFailedTests + (r.numFailedTestSuites ?? 0)
  console.log(`tests: ${r.numPassedTests} passed, ${failed} failed, ${r.numPendingTests + r.numTodoTests} skipped`)
  if (r.numPassedTests === 0) { console.error("no test ran: check test.projects in vitest.config.ts"); process.exit(1) }
' "$results" || status=1
exit "$status"
