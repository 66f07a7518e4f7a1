"""Scheduled retrains in a child process, so serving keeps the interpreter and a core.

Run in a thread of the worker, a retrain shared the serving event loop's interpreter: the
held-out evaluation, the reads and the bookkeeping are Python holding the GIL, and
implicit's fit put a thread on every core, so answers queued behind it (issue 15; the
figure is ``recommender_serving_p99_during_retrain`` in docs/benchmarks.md).
:class:`ProcessTrainer` runs the same :func:`.training.retrain` in a child process
(``python -m services.recommender.trainer``), started by the worker's scheduler when a
retrain is due. A child of each worker rather than a dedicated trainer service: nothing
new to deploy, and every guarantee stays where it was:

- one trainer at a time: the child takes the same Postgres advisory lock, a session lock,
  so a child that dies for any reason releases it with its connection;
- the quality gate, activation and pruning: ``training.retrain`` itself, unchanged;
- reload after: the worker awaits the outcome and serves the new version at once;
- failure classes: the child replies ``busy`` (re-raised as :class:`TrainingBusy`, not
  counted) or ``failed`` (:class:`TrainingFailed`, counted as a failed retrain);
- cancel on stop: cancelling the call (the worker's stop cancels its retrain) terminates
  the child and waits for it; a worker killed outright closes the child's stdin, and the
  child exits on that end of file. No orphan either way.

The child fits with ``recommender_trainer_threads`` threads (default: every CPU but one)
and BLAS single-threaded, at ``nice`` ``recommender_trainer_nice``, so serving keeps a
core and wins the CPU when it is scarce. The request and the reply cross as one JSON line
each (stdin, stdout); the child's logs go to the worker's stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from shared.errors import MarqueeError

from .model import AlsParams
from .model_store import TrainingBusy
from .schedule import due_now
from .settings import RecommenderSettings
from .training import Outcome

log = logging.getLogger(__name__)

CHILD = (sys.executable, "-m", "services.recommender.trainer")
#: The child's exit code when the worker went away while it trained.
PARENT_GONE = 3


class TrainingFailed(MarqueeError):
    """The child trainer failed or died; the next scheduled check tries again."""


def trainer_threads(settings: RecommenderSettings) -> int:
    """The child's fit threads: as configured, else every CPU this process may use but one."""
    if settings.recommender_trainer_threads:
        return settings.recommender_trainer_threads
    return max(1, len(os.sched_getaffinity(0)) - 1)


def plain_settings(settings: RecommenderSettings) -> dict[str, Any]:
    """Every field as JSON, secrets revealed: the child connects exactly as the worker does.
    It travels only on the pipe between the two processes and is never logged."""
    plain = {}
    for name, value in settings.model_dump().items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, Path):
            value = str(value)
        plain[name] = value
    return plain


def read_reply(out: bytes, returncode: int) -> Outcome:
    """The outcome the child replied, or the error its reply (or its silence) means."""
    try:
        reply = json.loads(out)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        raise TrainingFailed(
            f"the trainer process exited with code {returncode} without a reply"
            " (its log is in the worker's)"
        )
    if "busy" in reply:
        raise TrainingBusy(reply["busy"])
    if "failed" in reply:
        raise TrainingFailed(reply["failed"])
    return Outcome(**reply["outcome"])


class ProcessTrainer:
    """The worker's trainer: ``await trainer(models, params, gate_ratio=, keep=, due=)``,
    ``training.retrain``'s arguments, runs it in a child process."""

    def __init__(
        self,
        settings: RecommenderSettings,
        *,
        command: tuple[str, ...] = CHILD,
        grace_seconds: float = 5.0,
    ) -> None:
        self.settings = settings
        self.command = command
        self.grace_seconds = grace_seconds
        #: The child running now, if any.
        self.process: asyncio.subprocess.Process | None = None

    async def __call__(
        self, models, params: AlsParams, *, gate_ratio: float, keep: int, due
    ) -> Outcome:
        """``models`` and ``due`` stand for the worker's store and policy: the child opens
        the same store from the same settings and, once it holds the lock, asks the same
        policy whether the retrain is still due."""
        threads = trainer_threads(self.settings)
        request = {
            "settings": plain_settings(self.settings),
            "params": asdict(params),
            "gate_ratio": gate_ratio,
            "keep": keep,
            "ask_due": due is not None,
            "threads": threads,
            "nice": self.settings.recommender_trainer_nice,
        }
        # OpenMP (implicit's threads) and BLAS, bounded before either library loads.
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": "1"}
        process = self.process = await asyncio.create_subprocess_exec(
            *self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env
        )
        try:
            try:
                process.stdin.write(json.dumps(request).encode() + b"\n")
                await process.stdin.drain()
            except ConnectionError:
                pass  # it died at once: its exit code says so below
            out = await process.stdout.read()  # until the child exits
            returncode = await process.wait()
        finally:
            await self._end(process)
            self.process = None
        return read_reply(out, returncode)

    async def _end(self, process: asyncio.subprocess.Process) -> None:
        """Leave no child behind: one still running (the call was cancelled) is terminated,
        then killed if it does not go within the grace period."""
        try:
            if process.returncode is None:
                log.info("stopping the trainer process %s", process.pid)
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), self.grace_seconds)
                except TimeoutError:
                    process.kill()
                    await process.wait()
        except asyncio.CancelledError:
            process.kill()  # cancelled again while waiting: no more waiting
            raise
        finally:
            process.stdin.close()  # only now: the child takes its end of file as "stop"


# -- the child -------------------------------------------------------------------------------
def exit_with_parent() -> None:
    """Exit at once when stdin ends: the worker holds it open while it waits for the reply,
    so an end of file means the worker is gone, even killed with SIGKILL."""

    def watch() -> None:
        sys.stdin.read()
        os._exit(PARENT_GONE)  # the training lock goes with the closed connection

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def train(request: dict[str, Any]) -> dict[str, Any]:
    """Run the retrain ``request`` describes; the reply for the worker."""
    from shared.db import make_engine
    from shared.logging import configure_logging

    from .model_store import ModelStore
    from .training import retrain

    settings = RecommenderSettings(_env_file=None, **request["settings"])
    configure_logging(settings.log_level, settings.log_format)
    os.nice(request["nice"])
    store = ModelStore(make_engine(settings))
    policy = settings.retrain_policy()
    try:
        outcome = retrain(
            store,
            AlsParams(**request["params"]),
            gate_ratio=request["gate_ratio"],
            keep=request["keep"],
            due=(lambda: due_now(policy, store)) if request["ask_due"] else None,
            num_threads=request["threads"],
        )
    except TrainingBusy as exc:
        return {"busy": str(exc)}
    except Exception as exc:  # noqa: BLE001 - the worker counts it and tries again later
        log.exception("the retrain failed")
        return {"failed": f"{type(exc).__name__}: {exc}"}
    finally:
        store.engine.dispose()
    return {"outcome": asdict(outcome)}


def main() -> int:
    # The reply gets the real stdout to itself; anything a library prints goes to stderr.
    reply_to = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    line = sys.stdin.readline()
    if not line:
        return PARENT_GONE
    exit_with_parent()
    reply = train(json.loads(line))
    reply_to.write(json.dumps(reply) + "\n")
    reply_to.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
