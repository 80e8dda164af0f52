#!/usr/bin/env bash
# THE command that runs every test: starts the private nats-server and Postgres if needed (not
# when NATS_URL / DATABASE_URL point elsewhere), builds the binaries, runs `cargo test --workspace --locked` with any
# extra arguments passed through, then stops only what it started itself.
#   scripts/test.sh                      # everything
#   scripts/test.sh policy_create        # a filter
#   scripts/test.sh -- --nocapture       # arguments for the test binaries
# Works without stdin and with CI=true (what .ci/run does).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local rc=$?
  # Never let cleanup change cargo's exit status.
  stop_started || log "warning: could not stop every service this run started"
  exit "$rc"
}
trap cleanup EXIT
# Turn signals into a normal exit so the EXIT trap stops what we started.
trap 'exit 130' INT
trap 'exit 143' TERM

start_nats
start_postgres
export_env

echo "== gatehouse tests: cargo test --workspace --locked $*"
describe_services
echo "  cargo target dir  $CARGO_TARGET_DIR"

cd "$REPO"
# Set-up of the clients some tests drive (npm and PyPI packages, Chromium): each executable
# scripts/test.d/*.sh installs its own, idempotently, from the registries.
for setup in "$REPO"/scripts/test.d/*.sh; do
  [[ -x "$setup" ]] || continue
  log "set-up: ${setup#"$REPO"/}"
  "$setup" </dev/null || die "set-up failed: ${setup#"$REPO"/}"
done
rc=0
# The binaries too: tests run `gatehouse` and `gatehouse bench` (which runs `gatehouse-bench`
# beside it), and `cargo test` builds a package's binary only for its own integration tests.
cargo build --workspace --bins --locked </dev/null || exit $?
cargo test --workspace --locked "$@" </dev/null || rc=$?
exit "$rc"
