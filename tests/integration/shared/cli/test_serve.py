"""``marquee serve NAME`` with nothing but the stack configured: every installed service
starts on its own default port, all of them at once on one machine."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest

from shared.registry import services
from tests.integration.stack_helpers import cli_env
from tests.integration.worker_helpers import get


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_every_service_binds_its_own_default_port(topics, engine, tmp_path):
    ports = {name: spec.default_port for name, spec in services().items()}
    busy = [port for port in ports.values() if not port_is_free(port)]
    if busy:
        pytest.fail(f"ports {busy} are in use (a running `make demo`?); stop it and rerun")
    env = cli_env(topics) | {"MARQUEE_RECOMMENDER_RETRAIN_CHECK_SECONDS": "0"}
    env.pop("MARQUEE_HTTP_PORT", None)
    procs = {}
    try:
        for name in ports:
            with (tmp_path / f"{name}.log").open("w") as log:
                procs[name] = subprocess.Popen(
                    [sys.executable, "-m", "shared.cli.main", "serve", name],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=tmp_path,
                )
        waiting = dict(ports)
        deadline = time.monotonic() + 120
        while waiting and time.monotonic() < deadline:
            for name, port in list(waiting.items()):
                assert procs[name].poll() is None, (tmp_path / f"{name}.log").read_text()[-3000:]
                try:
                    if get(port, "/livez")[0] == 200:
                        del waiting[name]
                except OSError:
                    pass
            time.sleep(0.5)
        assert not waiting, {n: (tmp_path / f"{n}.log").read_text()[-2000:] for n in waiting}
        assert sorted(ports.values()) == [6066, 6067, 6068, 6069, 6071]
        # SIGTERM stops each within the grace period the README documents (15 s).
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        for name, proc in procs.items():
            code = proc.wait(timeout=max(0.1, 15 - (time.monotonic() - started)))
            assert code == 0, (name, (tmp_path / f"{name}.log").read_text()[-2000:])
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_a_service_without_a_broker_stops_in_one_line(settings, tmp_path):
    """No page of client retries before it: the start-up check says what is wrong, within
    5 s like every command (a guard, generously measured, not a benchmark)."""
    env = cli_env(settings) | {"MARQUEE_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    env.pop("MARQUEE_KAFKA_BOOTSTRAP_TIMEOUT_SECONDS", None)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli.main", "serve", "dashboard"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("marquee: error: cannot reach Kafka at 127.0.0.1:1 within 3 s")
    assert elapsed < 10, elapsed
    assert "Traceback" not in result.stderr and "ECONNREFUSED" in last
    assert "kafka.net" not in result.stderr  # the client's own retry lines stay out
