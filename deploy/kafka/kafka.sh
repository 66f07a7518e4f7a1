#!/usr/bin/env bash
# Native Apache Kafka (KRaft, single node) for development, tests and the demo.
#   kafka.sh fetch   download the pinned broker jars from Maven Central (pom.xml)
#   kafka.sh start   format storage on first start, start, wait until an admin call works
#   kafka.sh stop    stop cleanly (SIGTERM, then SIGKILL after 30 s)
#   kafka.sh status  exit 0 when running and answering admin calls
# An existing installation is used instead of the jars when KAFKA_HOME is set.
# MARQUEE_JAVA / MARQUEE_MVN name the java and mvn commands (default: from PATH); java_bin
# (lib.sh) insists on Java 17 or newer.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

KAFKA_DIR="$DEPLOY_DIR/kafka"
PORT="${MARQUEE_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${MARQUEE_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
# +4, not +2: the compose stack publishes its host listener on 9094 beside a native 9092.
SASL_PORT="${MARQUEE_KAFKA_SASL_PORT:-$((PORT + 4))}"
STATE_DIR="$RUN_DIR/kafka"
DATA_DIR="$STATE_DIR/data"
LOG_DIR="$STATE_DIR/logs"
PID_FILE="$STATE_DIR/kafka.pid"
CONFIG="$STATE_DIR/server.properties"
BOOTSTRAP="127.0.0.1:$PORT"
MVN="${MARQUEE_MVN:-mvn}"

classpath() {
    if [[ -n "${KAFKA_HOME:-}" ]]; then
        [[ -d "$KAFKA_HOME/libs" ]] || die "KAFKA_HOME=$KAFKA_HOME has no libs/ folder; point it at an unpacked Apache Kafka 4.x release."
        echo "$KAFKA_HOME/libs/*"
    else
        [[ -d "$KAFKA_DIR/target/lib" ]] || fetch
        echo "$KAFKA_DIR/target/lib/*"
    fi
}

fetch() {
    if [[ -n "${KAFKA_HOME:-}" ]]; then
        say "using the Kafka installation in KAFKA_HOME=$KAFKA_HOME"
        return 0
    fi
    # The stamp holds the pom's hash: editing pom.xml (a new Kafka version) fetches again.
    local want
    want="$(sha256sum "$KAFKA_DIR/pom.xml" | cut -d' ' -f1)"
    if [[ -f "$KAFKA_DIR/target/lib/.complete" && "$(cat "$KAFKA_DIR/target/lib/.complete")" == "$want" ]]; then
        return 0
    fi
    command -v "$MVN" >/dev/null || die "neither Maven nor KAFKA_HOME found. Install Maven (Debian: apt-get install maven) to fetch the broker jars, or set KAFKA_HOME to an unpacked Apache Kafka 4.x release."
    say "fetching the Apache Kafka broker jars with Maven (first run, or pom.xml changed)..."
    rm -rf "$KAFKA_DIR/target/lib"
    "$MVN" -q -B -f "$KAFKA_DIR/pom.xml" dependency:copy-dependencies >&2 \
        || die "Maven could not fetch the Kafka jars (see its output above)."
    echo "$want" > "$KAFKA_DIR/target/lib/.complete"
}

ready() {
    [[ -x "$PYTHON" ]] || die "no Python environment at $PYTHON: run 'make setup' first."
    "$PYTHON" "$KAFKA_DIR/ready.py" "$BOOTSTRAP"
}

write_config() {
    mkdir -p "$DATA_DIR" "$LOG_DIR"
    sed -e "s|@PORT@|$PORT|g" -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" -e "s|@SASL_PORT@|$SASL_PORT|g" \
        -e "s|@DATA_DIR@|$DATA_DIR|g" "$KAFKA_DIR/server.properties.in" > "$CONFIG"
}

java_cmd() {
    local java cp
    java="$(java_bin)"
    cp="$(classpath)"
    JAVA_CMD=("$java" -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true
        -Dkafka.logs.dir="$LOG_DIR"
        -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties"
        -cp "$cp")
}

start() {
    if pid_alive "$PID_FILE"; then
        say "kafka is already running (pid $(cat "$PID_FILE")) on $BOOTSTRAP"
        return 0
    fi
    # Another process on our port would answer the readiness probe in our broker's place.
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        die "port $PORT is in use by another process (another Kafka?); stop it or set MARQUEE_KAFKA_PORT"
    fi
    fetch
    write_config
    java_cmd
    if [[ ! -f "$DATA_DIR/meta.properties" ]]; then
        say "formatting KRaft storage in $DATA_DIR"
        local cluster_id
        cluster_id="$("${JAVA_CMD[@]}" kafka.tools.StorageTool random-uuid 2>>"$LOG_DIR/format.log")"
        # A static controller.quorum.voters list must not be combined with --standalone.
        "${JAVA_CMD[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$CONFIG" \
            >>"$LOG_DIR/format.log" 2>&1 || die "formatting Kafka storage failed; see $LOG_DIR/format.log"
    fi
    say "starting kafka on $BOOTSTRAP (log: $LOG_DIR/server.log)"
    nohup "${JAVA_CMD[@]}" kafka.Kafka "$CONFIG" >"$LOG_DIR/stdout.log" 2>&1 </dev/null &
    echo $! > "$PID_FILE"
    local deadline=$((SECONDS + ${MARQUEE_KAFKA_START_TIMEOUT:-90}))
    until ready 2>/dev/null; do
        if ! pid_alive "$PID_FILE"; then
            tail -n 20 "$LOG_DIR/stdout.log" "$LOG_DIR/server.log" >&2 2>/dev/null || true
            die "kafka exited during start-up; logs in $LOG_DIR"
        fi
        if ((SECONDS >= deadline)); then
            die "kafka did not answer an admin call within ${MARQUEE_KAFKA_START_TIMEOUT:-90} s; logs in $LOG_DIR"
        fi
        sleep 0.5
    done
    say "kafka is ready on $BOOTSTRAP"
}

status() {
    if pid_alive "$PID_FILE" && ready 2>/dev/null; then
        echo "kafka: running (pid $(cat "$PID_FILE")) on $BOOTSTRAP"
    else
        echo "kafka: stopped"
        return 1
    fi
}

case "${1:-}" in
    fetch) fetch ;;
    start) start ;;
    stop) stop_pid "$PID_FILE" kafka ;;
    status) status ;;
    *) die "usage: $0 {fetch|start|stop|status}" ;;
esac
