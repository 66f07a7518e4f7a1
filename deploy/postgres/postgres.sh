#!/usr/bin/env bash
# Native PostgreSQL for development, tests and the demo.
#   postgres.sh start   initdb on first start, start on 127.0.0.1, create role + database,
#                       apply the Alembic migrations, write the DSN to $RUN_DIR/postgres/dsn
#   postgres.sh stop    fast shutdown
#   postgres.sh status  exit 0 when our cluster runs and accepts connections
# Server binaries: MARQUEE_PG_BIN, else Debian's postgresql package, else the pgserver wheel.
# The default port is 5433 because Debian's postgresql package starts its own cluster on 5432.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

PORT="${MARQUEE_PG_PORT:-5433}"
DB_NAME="${MARQUEE_PG_DATABASE:-marquee}"
DB_USER="${MARQUEE_PG_USER:-marquee}"
# The DSN and password always live in STATE_DIR. The server's own files (data, socket, log)
# live there too, unless start recorded another place in server-dir or socket-dir.
STATE_DIR="$RUN_DIR/postgres"
DSN_FILE="$STATE_DIR/dsn"
PASSWORD_FILE="$STATE_DIR/password"
SERVER_DIR_FILE="$STATE_DIR/server-dir"
SOCKET_DIR_FILE="$STATE_DIR/socket-dir"

server_paths() {
    SERVER_DIR="$STATE_DIR"
    [[ ! -s "$SERVER_DIR_FILE" ]] || SERVER_DIR="$(cat "$SERVER_DIR_FILE")"
    DATA_DIR="$SERVER_DIR/data"
    LOG_FILE="$SERVER_DIR/postgres.log"
    SOCK_DIR="$SERVER_DIR/sock"
    [[ ! -s "$SOCKET_DIR_FILE" ]] || SOCK_DIR="$(cat "$SOCKET_DIR_FILE")"
}
server_paths

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
is_root() { [[ "$(id -u)" == 0 ]]; }

as_server_user() {
    if is_root; then
        id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' account: apt-get install postgresql"
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

psql_admin() {
    as_server_user "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK_DIR" -p "$PORT" -U postgres "$@"
}

# Our cluster, not whatever answers on the port.
running() {
    [[ -f "$DATA_DIR/postmaster.pid" ]] && as_server_user "$BIN/pg_ctl" status -D "$DATA_DIR" >/dev/null 2>&1
}

# The port our running cluster listens on (line 4 of postmaster.pid).
running_port() {
    sed -n 4p "$DATA_DIR/postmaster.pid"
}

accepting() {
    as_server_user "$BIN/pg_isready" -q -h "$SOCK_DIR" -p "$PORT"
}

# Another server on the port would take our clients' connections in our cluster's place.
refuse_taken_port() {
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || return 0
    local rc=0
    "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 3 || rc=$?
    if ((rc <= 1)); then  # 0: accepting, 1: rejecting (starting up): a PostgreSQL either way
        die "port $PORT is in use by another PostgreSQL (Debian's own cluster?); stop it or set MARQUEE_PG_PORT"
    fi
    die "port $PORT is in use by another process; stop it or set MARQUEE_PG_PORT"
}

# As root the server runs as 'postgres', which cannot reach a run dir under a private
# parent (/root/...). Its files then go to a postgres-owned folder named after the run dir;
# the DSN and password stay in STATE_DIR, readable by root only.
place_server() {
    mkdir -p "$STATE_DIR"
    is_root || return 0
    id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' account: apt-get install postgresql"
    if [[ ! -s "$SERVER_DIR_FILE" ]]; then
        if runuser -u postgres -- test -x "$RUN_DIR"; then
            chown postgres: "$STATE_DIR"
            return 0
        fi
        [[ ! -d "$STATE_DIR/data" ]] \
            || die "the postgres account can no longer reach $STATE_DIR/data (a parent folder became private); make the parent folders searchable (chmod o+x) again"
        printf '/var/lib/marquee/%s/postgres\n' \
            "$(realpath -m "$RUN_DIR" | tr -d '\n' | sha256sum | cut -c1-12)" > "$SERVER_DIR_FILE"
        server_paths
    fi
    install -d -m 755 "${SERVER_DIR%/*/*}" "${SERVER_DIR%/*}"
    install -d -m 700 -o postgres -g postgres "$SERVER_DIR"
    say "the postgres account cannot reach $RUN_DIR (a parent folder is private): the server's data, socket and log are in $SERVER_DIR"
}

# Local connections are trusted (the admin psql below), so the socket is the server
# account's alone: a private folder and a 0700 socket. A socket path must fit in ~107 bytes,
# so a long one moves to a short private folder under /tmp, recorded in socket-dir.
prepare_socket_dir() {
    local owner dir="$SERVER_DIR/sock"
    if is_root; then owner=postgres; else owner="$(id -un)"; fi
    if ((${#dir} + ${#PORT} + 10 > 100)); then  # 10: "/.s.PGSQL."
        dir="$(cat "$SOCKET_DIR_FILE" 2>/dev/null || true)"
        if [[ -z "$dir" || -L "$dir" || ! -d "$dir" || "$(stat -c %U "$dir")" != "$owner" ]]; then
            dir="$(mktemp -d /tmp/marquee-pg.XXXXXX)"
            printf '%s\n' "$dir" > "$SOCKET_DIR_FILE"
        fi
    else
        rm -f "$SOCKET_DIR_FILE"
        mkdir -p "$dir"
    fi
    chmod 700 "$dir"
    ! is_root || chown postgres: "$dir"
    SOCK_DIR="$dir"
}

init_cluster() {
    if [[ ! -f "$DATA_DIR/PG_VERSION" ]]; then
        say "initialising a PostgreSQL cluster in $DATA_DIR"
        as_server_user "$BIN/initdb" -D "$DATA_DIR" -U postgres -E UTF8 --locale=C.UTF-8 \
            --auth-local=trust --auth-host=scram-sha-256 >"$SERVER_DIR/initdb.log" 2>&1 \
            || die "initdb failed; see $SERVER_DIR/initdb.log"
        # initdb trusts every local role; keep trust for the admin role only.
        as_server_user tee "$DATA_DIR/pg_hba.conf" >/dev/null <<'HBA'
# Written by deploy/postgres/postgres.sh. The socket is private to the server's account,
# which alone connects without a password, as the admin role.
local   all   postgres                trust
local   all   all                     scram-sha-256
host    all   all       127.0.0.1/32  scram-sha-256
host    all   all       ::1/128       scram-sha-256
HBA
    fi
    touch "$LOG_FILE"
    ! is_root || chown postgres: "$LOG_FILE"
}

# urlquote TEXT -> TEXT percent-encoded for a URL's user or password (read from stdin, so a
# password never shows on a command line)
urlquote() {
    if [[ "$1" =~ ^[A-Za-z0-9._~-]*$ ]]; then
        printf '%s' "$1"
        return
    fi
    [[ -x "$PYTHON" ]] || die "no Python environment at $PYTHON: run 'make setup' first."
    printf '%s' "$1" | "$PYTHON" -c 'import sys, urllib.parse; sys.stdout.write(urllib.parse.quote(sys.stdin.buffer.read(), safe=""))'
}

ensure_role_and_db() {
    local password user_q password_q
    if [[ -n "${MARQUEE_PG_PASSWORD:-}" ]]; then
        password="$MARQUEE_PG_PASSWORD"
    elif [[ -s "$PASSWORD_FILE" ]]; then
        password="$(cat "$PASSWORD_FILE")"
    else
        password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
        (umask 077; printf '%s' "$password" > "$PASSWORD_FILE")
    fi
    # The password travels in the environment (not argv, which ps shows) and psql's :'pw'
    # quotes it as a literal, so it never becomes SQL text.
    MARQUEE_PG_ROLE_PASSWORD="$password" psql_admin -d postgres -v role="$DB_USER" <<'SQL' \
        || die "could not create the role $DB_USER (psql 15 or newer is needed; found $("$BIN/psql" --version))"
\getenv pw MARQUEE_PG_ROLE_PASSWORD
SELECT format('CREATE ROLE %I LOGIN', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
ALTER ROLE :"role" WITH LOGIN PASSWORD :'pw';
SQL
    psql_admin -d postgres -v role="$DB_USER" -v db="$DB_NAME" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
    user_q="$(urlquote "$DB_USER")"
    password_q="$(urlquote "$password")"
    (umask 077; printf 'postgresql+psycopg2://%s:%s@127.0.0.1:%s/%s\n' \
        "$user_q" "$password_q" "$PORT" "$DB_NAME" > "$DSN_FILE")
}

migrate() {
    [[ -x "$PYTHON" ]] || die "no Python environment at $PYTHON: run 'make setup' first."
    say "applying database migrations"
    MARQUEE_POSTGRES_DSN="$(cat "$DSN_FILE")" "$PYTHON" -m shared.cli.main db upgrade >&2
}

start() {
    BIN="$(pg_bin)"
    if running; then
        local port
        port="$(running_port)"
        [[ "$port" == "$PORT" ]] \
            || die "our postgres is already running on port $port, not $PORT; stop it first (MARQUEE_PG_PORT=$port $0 stop)"
        # A cluster started by an older version of this script left its socket folder open.
        [[ ! -d "$SOCK_DIR" ]] || chmod 700 "$SOCK_DIR"
        say "postgres is already running on 127.0.0.1:$PORT"
    else
        refuse_taken_port
        place_server
        init_cluster
        prepare_socket_dir
        say "starting postgres on 127.0.0.1:$PORT (data: $DATA_DIR, log: $LOG_FILE)"
        as_server_user "$BIN/pg_ctl" -D "$DATA_DIR" -l "$LOG_FILE" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$SOCK_DIR -c unix_socket_permissions=0700 -c max_connections=200" \
            start >/dev/null || { tail -n 20 "$LOG_FILE" >&2; die "postgres did not start; see $LOG_FILE"; }
        wait_for 30 postgres accepting || die "postgres is not accepting connections; see $LOG_FILE"
    fi
    ensure_role_and_db
    [[ "${MARQUEE_PG_SKIP_MIGRATE:-0}" == 1 ]] || migrate
}

stop() {
    BIN="$(pg_bin)"
    if running; then
        as_server_user "$BIN/pg_ctl" -D "$DATA_DIR" -m fast -w stop >/dev/null && say "postgres stopped"
    else
        say "postgres is not running"
    fi
}

status() {
    BIN="$(pg_bin)"
    if running; then
        PORT="$(running_port)"
        if accepting 2>/dev/null; then
            echo "postgres: running on 127.0.0.1:$PORT (database $DB_NAME)"
            return 0
        fi
    fi
    echo "postgres: stopped"
    return 1
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    dsn) cat "$DSN_FILE" ;;
    *) die "usage: $0 {start|stop|status|dsn}" ;;
esac
