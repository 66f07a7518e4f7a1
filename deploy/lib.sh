# Shared helpers for the native stack scripts (sourced, not executed).
# Every path and port comes from the environment so tests can run a private stack
# beside a developer's own: MARQUEE_RUN_DIR, MARQUEE_KAFKA_PORT, MARQUEE_PG_PORT, ...

set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(cd "$DEPLOY_DIR/.." && pwd)"
RUN_DIR="${MARQUEE_RUN_DIR:-$ROOT_DIR/.run}"
PYTHON="${MARQUEE_PYTHON:-$ROOT_DIR/.venv/bin/python}"

say() { printf '%s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# java_bin -> the java that runs Kafka (and Maven): JAVA_HOME's, else MARQUEE_JAVA or java
# from PATH. Kafka 4 needs Java 17 or newer; anything else stops here with what to install.
java_bin() {
    local java major
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        java="$JAVA_HOME/bin/java"
    elif command -v "${MARQUEE_JAVA:-java}" >/dev/null; then
        java="$(command -v "${MARQUEE_JAVA:-java}")"
    else
        die "no Java runtime found. Install a JDK 17 or newer (Debian: apt-get install default-jre-headless) or set JAVA_HOME."
    fi
    # "1.8.0_392" is Java 8, "17.0.15" is 17, "21-ea" is 21.
    major="$("$java" -version 2>&1 | sed -n 's/.* version "\([^"]*\)".*/\1/p' | head -n 1 || true)"
    major="${major#1.}"
    major="${major%%[.+-]*}"
    [[ "$major" =~ ^[0-9]+$ ]] || die "could not read the version of $java ('$java -version' failed); install a JDK 17 or newer or set JAVA_HOME."
    ((major >= 17)) || die "$java is Java $major; Kafka 4 needs 17 or newer. Install one (Debian/Ubuntu: apt-get install openjdk-17-jre-headless, or openjdk-21-jre-headless) and set JAVA_HOME to it."
    echo "$java"
}

# pid_alive FILE -> 0 when FILE names a running process
pid_alive() {
    [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

# wait_for SECONDS DESCRIPTION COMMAND... -> retries COMMAND until it succeeds
wait_for() {
    local deadline=$((SECONDS + $1)) what="$2"
    shift 2
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.5
    done
    say "$what is ready"
}

# stop_pid FILE NAME -> SIGTERM, wait up to 30 s, then SIGKILL
stop_pid() {
    local pidfile="$1" name="$2" pid
    if ! pid_alive "$pidfile"; then
        say "$name is not running"
        rm -f "$pidfile"
        return 0
    fi
    pid="$(cat "$pidfile")"
    kill -TERM "$pid"
    for _ in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; say "$name stopped"; return 0; }
        sleep 0.5
    done
    say "$name did not stop within 30 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}
