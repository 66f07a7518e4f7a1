#!/usr/bin/env bash
# Native PostgreSQL for development, tests and the demo.
#   postgres.sh start   initdb on first start, start on 127.0.0.1, create role + database,
#                       apply the Alembic migrations, write the DSN to $RUN_DIR/postgres/dsn
#   postgres.sh stop    fast shutdown
#   postgres.sh status  exit 0 when the server accepts connections
# Server binaries: MARQUEE_PG_BIN, else Debian's postgresql package, else the pgserver wheel.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

PORT="${MARQUEE_PG_PORT:-5432}"
DB_NAME="${MARQUEE_PG_DATABASE:-marquee}"
DB_USER="${MARQUEE_PG_USER:-marquee}"
STATE_DIR="$RUN_DIR/postgres"
DATA_DIR="$STATE_DIR/data"
SOCK_DIR="$STATE_DIR/sock"
LOG_FILE="$STATE_DIR/postgres.log"
DSN_FILE="$STATE_DIR/dsn"

pg_bin() {
    local candidate
    if [[ -n "${MARQUEE_PG_BIN:-}" ]]; then
        echo "$MARQUEE_PG_BIN"; return
    fi
    candidate="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -n "$candidate" && -x "$candidate/initdb" ]]; then
        echo "$candidate"; return
    fi
    if [[ -x "$PYTHON" ]] && candidate="$("$PYTHON" -c 'import os, pgserver; print(os.path.join(os.path.dirname(pgserver.__file__), "pginstall", "bin"))' 2>/dev/null)" && [[ -x "$candidate/initdb" ]]; then
        echo "$candidate"; return
    fi
    die "no PostgreSQL server found. As root: apt-get install postgresql. As a user: $PYTHON -m pip install pgserver. Or set MARQUEE_PG_BIN to a folder holding initdb and pg_ctl."
}

# PostgreSQL refuses to run as root: as root the server runs as the 'postgres' account
# that Debian's package creates.
as_server_user() {
    if [[ "$(id -u)" == 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' account: apt-get install postgresql"
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

psql_admin() {
    as_server_user "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK_DIR" -p "$PORT" -U postgres "$@"
}

accepting() {
    as_server_user "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"
}

init_cluster() {
    mkdir -p "$STATE_DIR" "$SOCK_DIR"
    if [[ "$(id -u)" == 0 ]]; then
        chown postgres: "$STATE_DIR" "$SOCK_DIR"
        runuser -u postgres -- test -w "$STATE_DIR" \
            || die "the postgres account cannot reach $STATE_DIR (a parent folder is private); set MARQUEE_RUN_DIR to a folder it can reach"
    fi
    if [[ ! -f "$DATA_DIR/PG_VERSION" ]]; then
        say "initialising a PostgreSQL cluster in $DATA_DIR"
        as_server_user "$BIN/initdb" -D "$DATA_DIR" -U postgres -E UTF8 --locale=C.UTF-8 \
            --auth-local=trust --auth-host=scram-sha-256 >"$STATE_DIR/initdb.log" 2>&1 \
            || die "initdb failed; see $STATE_DIR/initdb.log"
    fi
    touch "$LOG_FILE"
    [[ "$(id -u)" == 0 ]] && chown postgres: "$LOG_FILE"
    return 0
}

ensure_role_and_db() {
    local password
    if [[ -n "${MARQUEE_PG_PASSWORD:-}" ]]; then
        password="$MARQUEE_PG_PASSWORD"
    elif [[ -s "$STATE_DIR/password" ]]; then
        password="$(cat "$STATE_DIR/password")"
    else
        password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
        (umask 077; printf '%s' "$password" > "$STATE_DIR/password")
    fi
    # psql's :'var' quotes the value as a literal: the password never becomes SQL text.
    psql_admin -d postgres -v role="$DB_USER" -v pw="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
ALTER ROLE :"role" WITH LOGIN PASSWORD :'pw';
SQL
    psql_admin -d postgres -v role="$DB_USER" -v db="$DB_NAME" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
    (umask 077; printf 'postgresql+psycopg2://%s:%s@127.0.0.1:%s/%s\n' \
        "$DB_USER" "$password" "$PORT" "$DB_NAME" > "$DSN_FILE")
}

migrate() {
    [[ -x "$PYTHON" ]] || die "no Python environment at $PYTHON: run 'make setup' first."
    say "applying database migrations"
    MARQUEE_POSTGRES_DSN="$(cat "$DSN_FILE")" "$PYTHON" -m shared.cli.main db upgrade >&2
}

start() {
    BIN="$(pg_bin)"
    if accepting 2>/dev/null; then
        say "postgres is already running on 127.0.0.1:$PORT"
    else
        init_cluster
        say "starting postgres on 127.0.0.1:$PORT (log: $LOG_FILE)"
        as_server_user "$BIN/pg_ctl" -D "$DATA_DIR" -l "$LOG_FILE" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$SOCK_DIR -c max_connections=200" \
            start >/dev/null || { tail -n 20 "$LOG_FILE" >&2; die "postgres did not start; see $LOG_FILE"; }
        wait_for 30 postgres accepting || die "postgres is not accepting connections; see $LOG_FILE"
    fi
    ensure_role_and_db
    [[ "${MARQUEE_PG_SKIP_MIGRATE:-0}" == 1 ]] || migrate
}

stop() {
    BIN="$(pg_bin)"
    if [[ -f "$DATA_DIR/postmaster.pid" ]]; then
        as_server_user "$BIN/pg_ctl" -D "$DATA_DIR" -m fast -w stop >/dev/null && say "postgres stopped"
    else
        say "postgres is not running"
    fi
}

status() {
    BIN="$(pg_bin)"
    if accepting 2>/dev/null; then
        echo "postgres: running on 127.0.0.1:$PORT (database $DB_NAME)"
    else
        echo "postgres: stopped"
        return 1
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    dsn) cat "$DSN_FILE" ;;
    *) die "usage: $0 {start|stop|status|dsn}" ;;
esac
