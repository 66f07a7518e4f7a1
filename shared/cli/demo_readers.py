"""The demo's readers: a collector app key, ``marquee simulate readers`` against the live
services once a model serves, and the CTR per strategy as the feedback service counts it.

Everything goes through the CLI and HTTP (``shared`` imports no service): the key comes
from ``marquee apps add``, the readers run as a child process, the summary is the feedback
service's own ``GET /metrics/ctr``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable

from ..errors import MarqueeError

SOURCE = "urn:marquee:demo-readers"
#: A short, seeded run: a few seconds of lists and clicks, the same clicks every demo.
READERS = 200
SEED = 18
#: The simulator's summary line per strategy: "als: 120 lists, 1200 slots, 84 clicks, ..."
_TALLY = re.compile(r"^\S+: \d+ lists, \d+ slots, (\d+) clicks")
_KEY = re.compile(r"^key \(shown once.*?\): (\S+)$", re.M)


class ReadersFailed(MarqueeError):
    """The app key could not be made (the readers then do not run)."""


def _marquee(*args: str, env: dict[str, str], stdin: str | None = None, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-m", "shared.cli.main", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def app_key(env: dict[str, str]) -> str:
    """A new collector app allowed to send interactions as :data:`SOURCE`; its key. Made
    before the collector starts, so its first key refresh already knows it."""
    name = f"demo-readers-{uuid.uuid4().hex[:8]}"
    done = _marquee(
        "apps", "add", name, "--types", "marquee.interaction.v1", "--source", SOURCE, env=env
    )
    found = _KEY.search(done.stdout)
    if done.returncode != 0 or not found:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ReadersFailed(f"`marquee apps add` failed: {tail[0]}")
    return found.group(1)


class Readers:
    """One seeded run of ``marquee simulate readers`` on a background thread; each line it
    prints goes to ``say``."""

    def __init__(self, env: dict[str, str], key: str, say: Callable[[str], None]) -> None:
        self.env, self.key, self.say = env, key, say
        self.thread: threading.Thread | None = None
        self.returncode: int | None = None
        #: Clicks the readers sent (from the simulator's own tally, once it has finished).
        self.clicks = 0

    def start(self, recommender_url: str, collector_url: str) -> None:
        args = ["simulate", "readers", "--key", "-", "--source", SOURCE]
        args += ["--readers", str(READERS), "--seed", str(SEED)]
        args += ["--recommender", recommender_url, "--collector", collector_url]

        def work() -> None:
            done = _marquee(*args, env=self.env, stdin=self.key + "\n", timeout=300)
            self.returncode = done.returncode
            for line in done.stdout.splitlines():
                self.say(f"readers: {line}")
                tally = _TALLY.match(line)
                if tally:
                    self.clicks += int(tally.group(1))
            if done.returncode != 0:
                self.say(f"readers failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")

        self.thread = threading.Thread(target=work, name="readers", daemon=True)
        self.thread.start()

    def wait(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout)


def ctr_lines(body: bytes) -> list[str]:
    """The feedback service's ``/metrics/ctr`` answer, one line per version and strategy."""
    lines = []
    for g in json.loads(body).get("groups", []):
        version = "no model" if g["model_version"] is None else f"v{g['model_version']}"
        ci = g.get("ci95")
        bounds = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "-"
        ctr = "-" if g["ctr"] is None else f"{g['ctr']:.3f}"
        lines.append(
            f"CTR {version} {g['strategy']} ({g['surface']}): {g['clicks']} of"
            f" {g['impressions']} slots clicked, {ctr}, 95% {bounds}"
        )
    return lines
