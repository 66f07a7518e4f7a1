"""The token, over a real network path: a client on another host is refused without it.

"Another host" is a network namespace this test makes, joined to this machine by a veth
pair on a private /30 from 198.18.0.0/15 (reserved for network tests). The dashboard binds
0.0.0.0 with a token; the client runs inside the namespace, so the server's TCP peer is the
namespace's address: nothing is simulated, nothing leaves this machine. Needs root and
iproute2 (CI and the dev machines run as root); skipped otherwise.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import uuid

import pytest

from tests.integration.dashboard.test_api import SERVE
from tests.integration.worker_helpers import get, service_worker

TOKEN = "dashboard-access-token-0123"

CLIENT = """
import sys, urllib.error, urllib.request
url, token, accept = sys.argv[1], sys.argv[2], sys.argv[3]
request = urllib.request.Request(url, headers={"Accept": accept})
if token:
    request.add_header("Authorization", "Bearer " + token)
try:
    with urllib.request.urlopen(request, timeout=10) as response:
        print(response.status, response.read(300).decode(errors="replace"))
except urllib.error.HTTPError as exc:
    print(exc.code, exc.read(300).decode(errors="replace"))
"""


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True, timeout=30)


@pytest.fixture
def other_host():
    """A network namespace reachable from here at ``host_ip``; yields (name, host_ip)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("making a network namespace needs root and iproute2")
    name = f"mq{uuid.uuid4().hex[:8]}"
    here, there = f"{name}h", f"{name}p"
    base = f"198.18.{random.randrange(256)}.{4 * random.randrange(64)}"  # a random /30
    prefix, last = base.rsplit(".", 1)
    host_ip, peer_ip = f"{prefix}.{int(last) + 1}", f"{prefix}.{int(last) + 2}"
    try:
        sh("ip", "netns", "add", name)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot make a network namespace here: {exc.stderr.strip()}")
    try:
        sh("ip", "link", "add", here, "type", "veth", "peer", "name", there)
        sh("ip", "link", "set", there, "netns", name)
        sh("ip", "addr", "add", f"{host_ip}/30", "dev", here)
        sh("ip", "link", "set", here, "up")
        sh("ip", "netns", "exec", name, "ip", "addr", "add", f"{peer_ip}/30", "dev", there)
        sh("ip", "netns", "exec", name, "ip", "link", "set", there, "up")
        sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name, host_ip
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", here], capture_output=True, timeout=30)


def from_other_host(
    namespace: str, url: str, token: str = "", accept: str = "*/*"
) -> tuple[int, str]:
    done = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", CLIENT, url, token, accept],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    status, _, body = done.stdout.partition(" ")
    return int(status), body


def test_a_non_local_request_without_the_token_is_refused(topics, engine, tmp_path, other_host):
    namespace, host_ip = other_host
    with service_worker(
        topics, tmp_path, SERVE, MARQUEE_HTTP_HOST="0.0.0.0", MARQUEE_HTTP_TOKEN=TOKEN
    ) as (_, port):
        base = f"http://{host_ip}:{port}"
        # The path works (probes answer anyone), so a 401 below is the token check.
        assert from_other_host(namespace, f"{base}/livez")[0] == 200

        status, body = from_other_host(namespace, f"{base}/api/state")
        assert status == 401 and "Bearer" in body
        status, body = from_other_host(namespace, f"{base}/", accept="text/html")
        assert status == 401 and 'action="/login"' in body
        assert from_other_host(namespace, f"{base}/api/lag")[0] == 401

        status, body = from_other_host(namespace, f"{base}/api/state", token=TOKEN)
        assert status == 200 and body.startswith('{"generated_at"')
        assert from_other_host(namespace, f"{base}/api/state", token="x" * 26)[0] == 401

        # The same server, from this machine: no token needed.
        assert get(port, "/api/state")[0] == 200
