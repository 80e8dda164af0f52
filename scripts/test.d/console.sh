#!/usr/bin/env bash
# The console's end-to-end tests (tests/it/console.rs) drive Debian's Chromium with
# playwright-core from npm (pinned in tests/console/package-lock.json). Idempotent: fast when
# both are there.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=../lib.sh
source "$REPO/scripts/lib.sh"

if [[ ! -x /usr/bin/chromium ]]; then
  need_packages "Chromium is missing (the console's end-to-end tests drive it)" chromium
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  need_packages "Node.js is missing (it runs the console's end-to-end script)" nodejs npm
fi
console="$REPO/tests/console"
lock="$console/package-lock.json"
stamp="$console/node_modules/.gatehouse-lock.sha256"
want="$(sha256sum "$lock" | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  log "installing the console test's npm packages (npm ci in tests/console)"
  (cd "$console" && npm ci --no-audit --no-fund --loglevel=error >&2)
  printf '%s\n' "$want" >"$stamp"
fi
