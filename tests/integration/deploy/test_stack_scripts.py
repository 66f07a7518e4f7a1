"""The deploy/ scripts: real status against the session's stack, clear errors otherwise."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.integration.stack_helpers import ROOT, STACK_ENV

# Where postgres.sh puts a root-run server's files when 'postgres' cannot reach the run dir.
FALLBACK_ROOT = Path("/var/lib/marquee")


def run(script: str, *args: str, env: dict | None = None, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(cwd / "deploy" / script), *args],
        env={**STACK_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_status_reports_the_running_stack(stack):
    kafka = run("kafka/kafka.sh", "status")
    assert kafka.returncode == 0 and "kafka: running" in kafka.stdout
    pg = run("postgres/postgres.sh", "status")
    assert pg.returncode == 0 and "postgres: running" in pg.stdout


def test_start_is_idempotent(stack):
    again = run("kafka/kafka.sh", "start")
    assert again.returncode == 0
    assert "already running" in again.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_port_taken_by_another_process_is_refused(stack, tmp_path):
    # A second broker on the session broker's port would pass the readiness probe falsely.
    result = run("kafka/kafka.sh", "start", env={"MARQUEE_RUN_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert f"port {STACK_ENV['MARQUEE_KAFKA_PORT']} is in use by another process" in result.stderr


def test_missing_java_says_what_to_install(tmp_path):
    env = {
        "JAVA_HOME": "",
        "MARQUEE_JAVA": "/nonexistent/java",
        "MARQUEE_RUN_DIR": str(tmp_path),
        "MARQUEE_KAFKA_PORT": str(free_port()),
    }
    result = run("kafka/kafka.sh", "start", env=env)
    assert result.returncode == 1
    assert "no Java runtime found. Install a JDK 17 or newer" in result.stderr
    assert not (tmp_path / "kafka" / "kafka.pid").exists()


def test_kafka_home_without_libs_is_refused(tmp_path):
    env = {
        "KAFKA_HOME": str(tmp_path),
        "MARQUEE_RUN_DIR": str(tmp_path),
        "MARQUEE_KAFKA_PORT": str(free_port()),
    }
    result = run("kafka/kafka.sh", "start", env=env)
    assert result.returncode == 1
    assert f"KAFKA_HOME={tmp_path} has no libs/ folder" in result.stderr


def copy_of_deploy(tmp_path) -> Path:
    """A copy of deploy/ without fetched jars, so its kafka.sh must fetch them."""
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy", ignore=shutil.ignore_patterns("target"))
    return tmp_path / "deploy"


def fetch_in_copy(deploy: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "MARQUEE_RUN_DIR": str(deploy.parent / "run"), **env}
    full_env.pop("KAFKA_HOME", None)
    return subprocess.run(
        [str(deploy / "kafka/kafka.sh"), "fetch"],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_neither_maven_nor_kafka_home_says_what_to_install(tmp_path):
    result = fetch_in_copy(copy_of_deploy(tmp_path), MARQUEE_MVN="/nonexistent/mvn")
    assert result.returncode == 1
    assert (
        "neither Maven nor KAFKA_HOME found. Install Maven (Debian: apt-get install maven)"
        in result.stderr
    )


def test_jars_are_fetched_again_when_the_pom_changes(tmp_path):
    deploy = copy_of_deploy(tmp_path)
    calls = tmp_path / "mvn-calls"
    mvn = tmp_path / "mvn"
    mvn.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        'while [ $# -gt 0 ]; do [ "$1" = -f ] && mkdir -p "$(dirname "$2")/target/lib"; shift; done\n'
    )
    mvn.chmod(0o755)
    pom = deploy / "kafka/pom.xml"
    stamp = deploy / "kafka/target/lib/.complete"

    def fetches() -> int:
        result = fetch_in_copy(deploy, MARQUEE_MVN=str(mvn))
        assert result.returncode == 0, result.stderr
        assert stamp.read_text().strip() == hashlib.sha256(pom.read_bytes()).hexdigest()
        return len(calls.read_text().splitlines()) if calls.exists() else 0

    assert fetches() == 1
    assert fetches() == 1  # same pom: the jars are there
    pom.write_text(pom.read_text() + "<!-- a new Kafka version -->\n")
    assert fetches() == 2


@pytest.fixture
def pg_run_dir(tmp_path):
    """A run dir for a second PostgreSQL; afterwards stopped and removed, together with the
    postgres-owned folder that postgres.sh falls back to as root (under /var/lib/marquee)."""
    had_fallback_root = FALLBACK_ROOT.exists()
    yield tmp_path
    run("postgres/postgres.sh", "stop", env={"MARQUEE_RUN_DIR": str(tmp_path)})
    shutil.rmtree(fallback_dir(tmp_path).parent, ignore_errors=True)
    socket_record = tmp_path / "postgres" / "socket-dir"
    if socket_record.exists():
        shutil.rmtree(socket_record.read_text().strip(), ignore_errors=True)
    if not had_fallback_root:
        try:
            FALLBACK_ROOT.rmdir()
        except OSError:
            pass  # not there, or another run dir's server lives there


def fallback_dir(run_dir: Path) -> Path:
    digest = hashlib.sha256(os.path.realpath(run_dir).encode()).hexdigest()[:12]
    return FALLBACK_ROOT / digest / "postgres"


def test_postgres_refuses_a_port_held_by_another_server(stack, pg_run_dir):
    # The session's PostgreSQL is not this run dir's cluster: "running" must not be claimed.
    result = run("postgres/postgres.sh", "start", env={"MARQUEE_RUN_DIR": str(pg_run_dir)})
    assert result.returncode == 1
    port = STACK_ENV["MARQUEE_PG_PORT"]
    assert f"port {port} is in use by another PostgreSQL (Debian's own cluster?)" in result.stderr
    assert "set MARQUEE_PG_PORT" in result.stderr
    status = run("postgres/postgres.sh", "status", env={"MARQUEE_RUN_DIR": str(pg_run_dir)})
    assert status.returncode == 1 and "postgres: stopped" in status.stdout


def test_postgres_socket_is_private_and_dsn_encodes_the_password(pg_run_dir):
    port = free_port()
    password = "p@ss:w/rd %+é#?"
    env = {
        "MARQUEE_RUN_DIR": str(pg_run_dir),
        "MARQUEE_PG_PORT": str(port),
        "MARQUEE_PG_PASSWORD": password,
        "MARQUEE_PG_SKIP_MIGRATE": "1",
    }
    result = run("postgres/postgres.sh", "start", env=env)
    assert result.returncode == 0, result.stderr

    state = pg_run_dir / "postgres"
    record = state / "server-dir"
    if record.exists():  # as root, with pytest's private (700) base folder
        server = Path(record.read_text().strip())
        assert server == fallback_dir(pg_run_dir)
        assert f"the server's data, socket and log are in {server}" in result.stderr
    else:
        server = state
    socket_record = state / "socket-dir"  # a socket path too long for a Unix socket moves
    sock = Path(socket_record.read_text().strip()) if socket_record.exists() else server / "sock"
    assert stat.S_IMODE(sock.stat().st_mode) == 0o700
    assert stat.S_IMODE((sock / f".s.PGSQL.{port}").stat().st_mode) == 0o700

    dsn_file = state / "dsn"
    assert stat.S_IMODE(dsn_file.stat().st_mode) == 0o600
    engine = create_engine(dsn_file.read_text().strip())
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar() == "marquee"
    finally:
        engine.dispose()
    status = run("postgres/postgres.sh", "status", env=env)
    assert status.returncode == 0 and f"running on 127.0.0.1:{port}" in status.stdout


def test_unknown_command_prints_usage():
    result = run("kafka/kafka.sh", "explode")
    assert result.returncode == 1
    assert "usage:" in result.stderr
