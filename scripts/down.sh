#!/usr/bin/env bash
# Stops this checkout's private nats-server and Postgres (by the PIDs they recorded), whoever
# started them. Servers you run yourself (NATS_URL / DATABASE_URL) are never touched.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stop_nats
stop_postgres
log "private services stopped"
