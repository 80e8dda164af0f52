#!/usr/bin/env bash
# The OpenFeature clients tests/it/ofrep.rs drives against Gatehouse's OFREP routes:
# - Node: @openfeature/server-sdk + @openfeature/ofrep-provider, `npm ci` from the committed
#   tests/clients/node/package-lock.json (Debian's nodejs and npm when `node` is missing);
# - Python: openfeature-sdk + openfeature-provider-ofrep (and PyYAML), pinned in
#   tests/clients/python/requirements.txt, into $GATEHOUSE_VENV.
# Each is redone only when its lock file changed (a stamp keeps the lock's digest).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

digest() { sha256sum "$1" | cut -d' ' -f1; }

node_dir="$REPO/tests/clients/node"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  need_packages "the OFREP tests drive the OpenFeature Node SDK" nodejs npm
fi
node_stamp="$node_dir/node_modules/.gatehouse-lock"
if [[ "$(cat "$node_stamp" 2>/dev/null)" != "$(digest "$node_dir/package-lock.json")" ]]; then
  log "installing the OpenFeature Node SDK and OFREP provider (npm ci in tests/clients/node)"
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error </dev/null >&2)
  digest "$node_dir/package-lock.json" >"$node_stamp"
fi

requirements="$REPO/tests/clients/python/requirements.txt"
if [[ ! -x "$GATEHOUSE_VENV/bin/pip" ]]; then
  python3 -c 'import venv, ensurepip; ensurepip.version()' >/dev/null 2>&1 ||
    need_packages "the OFREP tests drive the OpenFeature Python SDK (a venv)" python3 python3-venv
  ensure_home
  log "creating venv $GATEHOUSE_VENV"
  python3 -m venv "$GATEHOUSE_VENV" >&2
fi
py_stamp="$GATEHOUSE_VENV/.gatehouse-ofrep-requirements"
if [[ "$(cat "$py_stamp" 2>/dev/null)" != "$(digest "$requirements")" ]]; then
  log "installing the OpenFeature Python SDK and OFREP provider into $GATEHOUSE_VENV"
  "$GATEHOUSE_VENV/bin/pip" install --quiet --no-input --disable-pip-version-check \
    -r "$requirements" </dev/null >&2
  digest "$requirements" >"$py_stamp"
fi
