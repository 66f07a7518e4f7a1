#!/usr/bin/env bash
# The native stack: Kafka + PostgreSQL + the registry's topics.
#   stack.sh up      start both (idempotent), apply migrations, ensure topics,
#                    write $RUN_DIR/marquee.env (addresses and DSN for the CLI and services)
#   stack.sh down    stop both
#   stack.sh status  one line per component; exit 1 if any is down
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ENV_FILE="$RUN_DIR/marquee.env"

up() {
    "$DEPLOY_DIR/kafka/kafka.sh" start
    "$DEPLOY_DIR/postgres/postgres.sh" start
    (
        umask 077
        {
            echo "# written by deploy/stack.sh up; the environment overrides these"
            echo "MARQUEE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:${MARQUEE_KAFKA_PORT:-9092}"
            echo "MARQUEE_POSTGRES_DSN=$("$DEPLOY_DIR/postgres/postgres.sh" dsn)"
        } > "$ENV_FILE"
    )
    # Quiet on success; on failure the CLI's own explanation is what the user needs.
    local out
    if ! out="$("$PYTHON" -m shared.cli.main --env-file "$ENV_FILE" topics ensure 2>&1)"; then
        printf '%s\n' "$out" >&2
        die "'marquee topics ensure' failed (its output is above); Kafka's log is in $RUN_DIR/kafka/logs"
    fi
    say "topics ensured; stack is up (settings in $ENV_FILE)"
}

status() {
    local rc=0
    "$DEPLOY_DIR/kafka/kafka.sh" status || rc=1
    "$DEPLOY_DIR/postgres/postgres.sh" status || rc=1
    return $rc
}

case "${1:-}" in
    up) up ;;
    down)
        "$DEPLOY_DIR/kafka/kafka.sh" stop
        "$DEPLOY_DIR/postgres/postgres.sh" stop
        ;;
    status) status ;;
    *) die "usage: $0 {up|down|status}" ;;
esac
