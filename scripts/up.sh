#!/usr/bin/env bash
# THE command that starts the whole system: the private nats-server and Postgres (unless
# NATS_URL / DATABASE_URL point elsewhere), a release build of gatehouse, then `gatehouse up` in
# the foreground (it runs the migrations itself). Ctrl-C stops gatehouse only; the broker and
# the database keep running until scripts/down.sh. Extra arguments go to `gatehouse up`.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# If something fails before gatehouse runs, don't leave services behind that this run started.
trap 'rc=$?; if ((rc != 0)); then stop_started; fi' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_nats
start_postgres
export_env
write_env_sh

cd "$REPO"
cargo build --release -p gatehouse -p gatehouse-bench
bin="$CARGO_TARGET_DIR/release/gatehouse"
[[ -x "$bin" ]] || die "build finished but $bin is missing"

cat <<INFO
== gatehouse
$(describe_services)
  binary    $bin

Use the CLI from another terminal:
  source $GATEHOUSE_HOME/env.sh
  gatehouse policy ...        (i.e. $bin policy ...)
  env.sh connects as \`gatehouse\`, Gatehouse's own user: --actor is recorded as given.
Act as a development user instead (the gateway records the user you connect as):
  NATS_USER=alice NATS_PASSWORD=\$GATEHOUSE_ALICE_PASSWORD gatehouse policy ...
  users: alice (every role, the first admin), bob (viewer only), svc (a service, role service),
         console (a delegate: --actor <person> is recorded with delegated_by console)
  roles: as alice, \`gatehouse access grant bob author\` gives bob more; \`gatehouse access roles\`
         lists them (docs/protocol.md, Roles)
  passwords: GATEHOUSE_<USER>_PASSWORD in $GATEHOUSE_SECRETS (and env.sh)
HTTP API: http://${GATEHOUSE_HTTP_ADDR:-127.0.0.1:8080} (GATEHOUSE_HTTP_ADDR; tokens: gatehouse access issue-token)
Console:  http://${GATEHOUSE_HTTP_ADDR:-127.0.0.1:8080}/console (sign in with a token: gatehouse access issue-token <user>)
  /readyz, /metrics (Prometheus) need no token
Smoke test, once it serves: gatehouse doctor   (exit 0: every check passed)
Stop the broker and database: scripts/down.sh

Starting: gatehouse up $*   (Ctrl-C to stop)
INFO

trap - EXIT INT TERM
exec "$bin" up "$@"
