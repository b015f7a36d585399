# Shared by scripts/quickstart and scripts/test: make sure PostgreSQL and
# nats-server are there. Each function checks first, then starts what is
# installed, then installs from the OS packages when running as root with
# apt-get, and otherwise says exactly what to do.
# shellcheck shell=bash

say()  { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
warn() { printf '\033[33mwarning:\033[0m %s\n' "$*" >&2; }
die()  { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }
have() { command -v "$1" >/dev/null 2>&1; }

APT_UPDATED=""
apt_install() {
  if ! is_root || ! have apt-get; then
    return 1
  fi
  if [ -z "$APT_UPDATED" ]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || return 1
    APT_UPDATED=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Is something listening on HOST PORT?
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() { # host port seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    port_open "$1" "$2" && return 0
    sleep 0.1
  done
  return 1
}

# --- PostgreSQL ------------------------------------------------------------

PG_HOST="${PG_HOST:-127.0.0.1}"
PG_PORT="${PG_PORT:-5432}"
# Trust auth ignores the password; password auth gets one we can set.
PG_ADMIN_URL_DEFAULT="postgres://postgres:postgres@${PG_HOST}:${PG_PORT}/postgres"

pg_can_connect() { psql "$1" -Atqc 'SELECT 1' >/dev/null 2>&1; }

start_postgres_cluster() {
  if have pg_ctlcluster && [ -d /etc/postgresql ]; then
    local v
    for v in /etc/postgresql/*/; do
      v=$(basename "$v")
      say "starting PostgreSQL $v cluster"
      pg_ctlcluster --skip-systemctl-redirect "$v" main start 2>/dev/null || pg_ctlcluster "$v" main start 2>/dev/null || true
    done
  elif have service; then
    service postgresql start >/dev/null 2>&1 || true
  fi
  wait_port "$PG_HOST" "$PG_PORT" 20
}

# Sets PG_ADMIN_URL to a URL that can create databases.
ensure_postgres() {
  PG_ADMIN_URL="${TEST_DATABASE_URL:-${PG_ADMIN_URL:-$PG_ADMIN_URL_DEFAULT}}"
  if ! have psql; then
    apt_install postgresql-client || die "psql is missing. Install the PostgreSQL client: apt-get install postgresql-client"
  fi
  if pg_can_connect "$PG_ADMIN_URL"; then
    export PG_ADMIN_URL
    return 0
  fi
  if ! port_open "$PG_HOST" "$PG_PORT"; then
    if ! have pg_ctlcluster && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
      apt_install postgresql || die "PostgreSQL is not installed and cannot be installed from here (needs root and apt-get).
  Install it:   sudo apt-get install postgresql
  or point the scripts at a server:   export TEST_DATABASE_URL=postgres://user:pass@host:5432/postgres"
    fi
    start_postgres_cluster || die "PostgreSQL is installed but did not start on ${PG_HOST}:${PG_PORT}. Start it (e.g. sudo pg_ctlcluster 15 main start) and retry."
  fi
  if ! pg_can_connect "$PG_ADMIN_URL" && is_root && have runuser; then
    # A fresh Debian cluster uses password auth on TCP: give the postgres
    # role the password our default URL carries (a local development default).
    say "setting a local development password for the postgres role"
    runuser -u postgres -- psql -qc "ALTER USER postgres PASSWORD 'postgres'" >/dev/null 2>&1 || true
  fi
  pg_can_connect "$PG_ADMIN_URL" || die "cannot log in to PostgreSQL at ${PG_HOST}:${PG_PORT} as postgres.
  Either allow it (ALTER USER postgres PASSWORD 'postgres'), or set TEST_DATABASE_URL to a URL of a role that may create databases."
  export PG_ADMIN_URL
}

# URL of another database on the same server.
pg_url_for() { # dbname
  local base="${PG_ADMIN_URL%%\?*}"
  echo "${base%/*}/$1"
}

ensure_database() { # name
  local exists
  exists=$(psql "$PG_ADMIN_URL" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$1'")
  if [ "$exists" != "1" ]; then
    say "creating database $1"
    psql "$PG_ADMIN_URL" -qc "CREATE DATABASE \"$1\"" >/dev/null
  fi
}

# --- NATS ------------------------------------------------------------------

find_nats_server() {
  if [ -n "${NATS_SERVER_BIN:-}" ] && [ -x "$NATS_SERVER_BIN" ]; then
    echo "$NATS_SERVER_BIN"; return 0
  fi
  local p
  for p in "$(command -v nats-server 2>/dev/null)" /usr/sbin/nats-server /usr/local/bin/nats-server /usr/bin/nats-server; do
    if [ -n "$p" ] && [ -x "$p" ]; then echo "$p"; return 0; fi
  done
  return 1
}

# Sets and exports NATS_SERVER_BIN.
ensure_nats_binary() {
  if ! NATS_SERVER_BIN=$(find_nats_server); then
    apt_install nats-server || die "nats-server is not installed and cannot be installed from here (needs root and apt-get).
  Install it:   sudo apt-get install nats-server
  or download it from https://github.com/nats-io/nats-server/releases and set NATS_SERVER_BIN=/path/to/nats-server"
    NATS_SERVER_BIN=$(find_nats_server) || die "nats-server still not found after installing it"
  fi
  export NATS_SERVER_BIN
}

NATS_HOST="${NATS_HOST:-127.0.0.1}"
NATS_PORT="${NATS_PORT:-4222}"

# A NATS server with JetStream listening on NATS_HOST:NATS_PORT; started in
# the background (state under $1) if none is.
ensure_nats_running() { # state-dir
  if port_open "$NATS_HOST" "$NATS_PORT"; then
    return 0
  fi
  ensure_nats_binary
  mkdir -p "$1/nats"
  say "starting nats-server with JetStream on ${NATS_HOST}:${NATS_PORT}"
  nohup "$NATS_SERVER_BIN" -a "$NATS_HOST" -p "$NATS_PORT" -js -sd "$1/nats" -l "$1/nats-server.log" \
    >/dev/null 2>&1 &
  echo $! >"$1/nats-server.pid"
  wait_port "$NATS_HOST" "$NATS_PORT" 10 || die "nats-server did not start; see $1/nats-server.log"
}

ensure_cargo() {
  have cargo || die "cargo is not installed. Install Rust from https://rustup.rs (rustup), then retry."
}

# --- sqlx-cli ----------------------------------------------------------------

# The sqlx-cli matching the sqlx of Cargo.lock: it regenerates and checks
# the offline query cache .sqlx/ (see README, "Queries").
SQLX_CLI_VERSION="0.8.6"

# Makes sure `cargo sqlx` is the pinned version, installing it with cargo.
ensure_sqlx_cli() {
  if cargo sqlx --version 2>/dev/null | grep -q " $SQLX_CLI_VERSION$"; then
    return 0
  fi
  say "installing sqlx-cli $SQLX_CLI_VERSION (cargo install, a few minutes once)"
  cargo install sqlx-cli --version "$SQLX_CLI_VERSION" --no-default-features \
    --features postgres,rustls --locked --quiet ||
    die "cargo could not install sqlx-cli $SQLX_CLI_VERSION (is crates.io reachable?)"
}

# Recreates database $1 and applies migrations/ to it; prints its URL.
fresh_migrated_database() { # name
  local url
  url=$(pg_url_for "$1")
  PGOPTIONS=--client-min-messages=warning psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null
  psql "$PG_ADMIN_URL" -qc "CREATE DATABASE \"$1\"" >/dev/null
  cargo sqlx migrate run --source migrations --database-url "$url" >/dev/null
  echo "$url"
}

# --- Monitoring and deployment tools ----------------------------------------

# The first executable among the arguments (names on the PATH or paths).
first_executable() {
  local p
  for p in "$@"; do
    if [ -z "$p" ]; then continue; fi
    if [ -x "$p" ] && [ -f "$p" ]; then echo "$p"; return 0; fi
    if have "$p"; then command -v "$p"; return 0; fi
  done
  return 1
}

# Sets and exports PROMETHEUS_BIN, PROMTOOL_BIN, ALERTMANAGER_BIN, AMTOOL_BIN
# and DOCKER_COMPOSE_BIN, installing the OS packages prometheus,
# prometheus-alertmanager and docker-compose when one is missing. The
# monitoring tests run these tools for real and fail without them.
ensure_monitoring_tools() {
  local missing=()
  first_executable "${PROMETHEUS_BIN:-}" prometheus >/dev/null &&
    first_executable "${PROMTOOL_BIN:-}" promtool >/dev/null || missing+=(prometheus)
  first_executable "${AMTOOL_BIN:-}" amtool >/dev/null &&
    first_executable "${ALERTMANAGER_BIN:-}" prometheus-alertmanager alertmanager >/dev/null || missing+=(prometheus-alertmanager)
  first_executable "${DOCKER_COMPOSE_BIN:-}" docker-compose >/dev/null || missing+=(docker-compose)
  if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}" || die "missing ${missing[*]}, and cannot install from here (needs root and apt-get).
  Install them:   sudo apt-get install ${missing[*]}
  or point the tests at them: PROMETHEUS_BIN, PROMTOOL_BIN, ALERTMANAGER_BIN, AMTOOL_BIN, DOCKER_COMPOSE_BIN"
  fi
  PROMETHEUS_BIN=$(first_executable "${PROMETHEUS_BIN:-}" prometheus) || die "prometheus still not found after installing it"
  PROMTOOL_BIN=$(first_executable "${PROMTOOL_BIN:-}" promtool) || die "promtool still not found after installing it"
  ALERTMANAGER_BIN=$(first_executable "${ALERTMANAGER_BIN:-}" prometheus-alertmanager alertmanager) || die "alertmanager still not found after installing it"
  AMTOOL_BIN=$(first_executable "${AMTOOL_BIN:-}" amtool) || die "amtool still not found after installing it"
  DOCKER_COMPOSE_BIN=$(first_executable "${DOCKER_COMPOSE_BIN:-}" docker-compose) || die "docker-compose still not found after installing it"
  export PROMETHEUS_BIN PROMTOOL_BIN ALERTMANAGER_BIN AMTOOL_BIN DOCKER_COMPOSE_BIN
}

# Sets and exports CHROMIUM_BIN and CHROMEDRIVER_BIN, installing the Debian
# packages chromium and chromium-driver when one is missing. The web UI's
# browser tests (service/tests/api/ui_browser.rs) drive a real headless
# Chromium through chromedriver and fail without them.
ensure_browser_tools() {
  local missing=()
  first_executable "${CHROMIUM_BIN:-}" chromium chromium-browser >/dev/null || missing+=(chromium)
  first_executable "${CHROMEDRIVER_BIN:-}" chromedriver >/dev/null || missing+=(chromium-driver)
  if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}" || die "missing ${missing[*]}, and cannot install from here (needs root and apt-get).
  Install them:   sudo apt-get install ${missing[*]}
  or point the tests at them: CHROMIUM_BIN, CHROMEDRIVER_BIN"
  fi
  CHROMIUM_BIN=$(first_executable "${CHROMIUM_BIN:-}" chromium chromium-browser) || die "chromium still not found after installing it"
  CHROMEDRIVER_BIN=$(first_executable "${CHROMEDRIVER_BIN:-}" chromedriver) || die "chromedriver still not found after installing it"
  export CHROMIUM_BIN CHROMEDRIVER_BIN
}

# --- Contract test tools -------------------------------------------------------

# The pinned schemathesis the contract test runs against /openapi.json
# (service/tests/api/contract.rs). It lives in its own virtualenv under the
# user's cache, shared by every checkout.
SCHEMATHESIS_VERSION="4.32.5"

# A python3 that schemathesis supports (3.11 or newer), or nothing.
find_python_for_schemathesis() {
  local p
  for p in python3.13 python3.12 python3.11 python3; do
    if have "$p" && "$p" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$p"; return 0
    fi
  done
  return 1
}

# Sets and exports SCHEMATHESIS_BIN, installing schemathesis with pip into a
# virtualenv when it is missing.
ensure_schemathesis() {
  if [ -n "${SCHEMATHESIS_BIN:-}" ] && [ -x "$SCHEMATHESIS_BIN" ]; then
    export SCHEMATHESIS_BIN; return 0
  fi
  local dir="${XDG_CACHE_HOME:-$HOME/.cache}/federation-tools/schemathesis-$SCHEMATHESIS_VERSION"
  local bin="$dir/bin/schemathesis"
  if ! "$bin" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    local py
    if ! py=$(find_python_for_schemathesis); then
      apt_install python3 python3-venv python3-pip || true
      py=$(find_python_for_schemathesis) || die "schemathesis $SCHEMATHESIS_VERSION needs Python 3.11 or newer with venv, and none was found.
  Install it (sudo apt-get install python3 python3-venv), or point the tests at an installed schemathesis: SCHEMATHESIS_BIN=/path/to/schemathesis"
    fi
    say "installing schemathesis $SCHEMATHESIS_VERSION into $dir"
    rm -rf "$dir"
    "$py" -m venv "$dir" || die "cannot create a virtualenv in $dir with $py (apt-get install python3-venv?)"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" ||
      die "pip could not install schemathesis $SCHEMATHESIS_VERSION (is PyPI reachable?)"
  fi
  SCHEMATHESIS_BIN="$bin"
  export SCHEMATHESIS_BIN
}
