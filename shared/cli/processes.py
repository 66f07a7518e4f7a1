"""Services as child processes, for ``marquee demo``: start, wait until up, stop cleanly."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import MarqueeError


class ServiceFailed(MarqueeError):
    """A service exited or never came up; the message names it and its log."""


@dataclass
class Child:
    name: str
    port: int
    log_path: Path
    proc: subprocess.Popen

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def check(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise ServiceFailed(
                f"the {self.name} service exited with code {code}; see {self.log_path}"
            )


class Supervisor:
    """Runs ``marquee serve NAME`` children with their logs in ``log_dir``."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir, self.env = log_dir, env
        self.children: dict[str, Child] = {}
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, port: int, **env: str) -> Child:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                raise ServiceFailed(
                    f"port {port} for the {name} service is taken (an earlier run still"
                    " going?); stop it or choose other ports with --base-port"
                ) from None
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "shared.cli.main", "serve", name],
                env={**self.env, "MARQUEE_HTTP_PORT": str(port), **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches us; we stop the children in order
            )
        child = self.children[name] = Child(name, port, log_path, proc)
        return child

    def wait_up(self, name: str, path: str = "/livez", timeout: float = 120.0) -> None:
        child = self.children[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            child.check()
            try:
                if child.get(path, timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise ServiceFailed(
            f"the {name} service did not answer {path} within {timeout:.0f} s; see {child.log_path}"
        )

    def check(self) -> None:
        for child in self.children.values():
            child.check()

    def stop(self, timeout: float = 30.0) -> None:
        for child in self.children.values():
            if child.proc.poll() is None:
                os.killpg(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children.values():
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait()
