"""The deploy/ scripts: real status against the session's stack, clear errors otherwise."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

from conftest import ROOT, STACK_ENV


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


def test_neither_maven_nor_kafka_home_says_what_to_install(tmp_path):
    # A copy of deploy/ without fetched jars, so the script must fetch them.
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy", ignore=shutil.ignore_patterns("target"))
    env = {**os.environ, "MARQUEE_MVN": "/nonexistent/mvn", "MARQUEE_RUN_DIR": str(tmp_path)}
    env.pop("KAFKA_HOME", None)
    result = subprocess.run(
        [str(tmp_path / "deploy/kafka/kafka.sh"), "fetch"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert (
        "neither Maven nor KAFKA_HOME found. Install Maven (Debian: apt-get install maven)"
        in result.stderr
    )


def test_unknown_command_prints_usage():
    result = run("kafka/kafka.sh", "explode")
    assert result.returncode == 1
    assert "usage:" in result.stderr
