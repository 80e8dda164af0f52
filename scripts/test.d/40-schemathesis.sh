#!/usr/bin/env bash
# Schemathesis (PyPI) for tests/it/openapi.rs: it generates requests from /openapi.json and
# checks every answer against it. Installed into $GATEHOUSE_VENV from the pinned lock beside
# this file; does nothing when that version is already there.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

lock="$REPO/scripts/test.d/schemathesis.lock.txt"
version="$(sed -n 's/^schemathesis==//p' "$lock")"
bin="$GATEHOUSE_VENV/bin/schemathesis"

if [[ -x "$bin" ]] && [[ "$("$bin" --version 2>/dev/null)" == *"version $version" ]]; then
  exit 0
fi
ensure_home
if [[ ! -x "$GATEHOUSE_VENV/bin/pip" ]]; then
  python3 -c 'import venv, ensurepip; ensurepip.version()' >/dev/null 2>&1 ||
    need_packages "python3 cannot create virtual environments (no ensurepip)" python3 python3-venv
  rm -rf "$GATEHOUSE_VENV"
  log "creating venv $GATEHOUSE_VENV"
  python3 -m venv "$GATEHOUSE_VENV" >&2
fi
log "installing schemathesis $version (PyPI) into $GATEHOUSE_VENV"
"$GATEHOUSE_VENV/bin/pip" install --quiet --no-input --disable-pip-version-check \
  -r "$lock" </dev/null >&2
[[ "$("$bin" --version 2>/dev/null)" == *"version $version" ]] ||
  die "$bin does not report version $version"
