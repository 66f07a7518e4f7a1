"""Running the chassis probe service as a real worker process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.stack_helpers import ROOT, cli_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def answer(port: int, path: str) -> dict:
    """The JSON body of a 200 answer (anything else fails the test)."""
    status, body = get(port, path)
    assert status == 200, body
    return json.loads(body)


def eventually(check, timeout: float = 20.0):
    """Poll ``check`` until it returns something truthy or ``timeout`` passes; its last
    result either way (callers assert on it)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.25)


def chassis_worker(settings, tmp_path: Path, **env: str):
    """The chassis probe service (chassis_app.py) as a worker. Run as a module of the
    tests package: as a script its folder would come first on sys.path, and
    tests/integration/shared would hide the real ``shared``."""
    command = [sys.executable, "-m", "tests.integration.chassis_app", "probe-1"]
    return service_worker(settings, tmp_path, command, PYTHONPATH=str(ROOT), **env)


@contextmanager
def service_worker(
    settings, tmp_path: Path, command: list[str], *, wait_for: str = "/readyz", **env: str
):
    """Start a worker, wait until ``wait_for`` answers 200, stop it with SIGTERM after.

    Ingest-only tests wait for /livez: without a trained model the worker consumes and
    stores, but is rightly not ready to serve."""
    port = free_port()
    defaults = {
        "MARQUEE_HTTP_PORT": str(port),
        "MARQUEE_LOG_LEVEL": "INFO",
        # Tests train when they mean to; a test of scheduled retraining turns it back on.
        "MARQUEE_RECOMMENDER_RETRAIN_CHECK_SECONDS": "0",
    }
    env = cli_env(settings) | defaults | env
    log_path = tmp_path / "worker.log"
    with log_path.open("a") as log:
        proc = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if get(port, wait_for)[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(log_path.read_text()[-3000:], pytrace=False)
            time.sleep(0.5)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
