"""The child-process trainer with fake child commands (no database, no ALS): what crosses
the pipe, what each reply means, and that no child outlives its call or its worker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import asdict

import pytest

from services.recommender.metrics import RecommenderMetrics
from services.recommender.model_store import TrainingBusy
from services.recommender.settings import RecommenderSettings
from services.recommender.trainer import (
    PARENT_GONE,
    ProcessTrainer,
    TrainingFailed,
    read_reply,
    trainer_threads,
)
from services.recommender.worker import RecommenderWorker
from shared.metrics import Metrics
from tests.services.recommender.fakes import PARAMS, empty, taste_clicks

SETTINGS = RecommenderSettings(
    _env_file=None,
    postgres_dsn="postgresql+psycopg2://marquee:s3cret@db.example:5432/marquee",
    recommender_trainer_threads=3,
    recommender_retrain_min_events=20,
)


def child(script: str) -> tuple[str, ...]:
    return (sys.executable, "-c", textwrap.dedent(script))


#: Replies with what it was asked, and the thread limit it was started with.
ECHO = child(
    """
    import json, os, sys
    request = json.loads(sys.stdin.readline())
    request["omp"] = os.environ["OMP_NUM_THREADS"]
    outcome = {"status": "active", "version": 7, "metrics": request, "passed": True,
               "fit_seconds": 0.5}
    print(json.dumps({"outcome": outcome}))
    """
)
#: Takes the request and trains "forever".
SLEEPER = child("import sys, time; sys.stdin.readline(); time.sleep(60)")


def retrain(trainer: ProcessTrainer, models=None):
    return trainer(models, PARAMS, gate_ratio=1.5, keep=4, due=lambda: "due")


async def running_child(trainer: ProcessTrainer) -> asyncio.subprocess.Process:
    for _ in range(500):
        if trainer.process is not None:
            return trainer.process
        await asyncio.sleep(0.01)
    raise AssertionError("the trainer process never started")


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_child_gets_the_settings_the_arguments_and_its_thread_limits():
    outcome = asyncio.run(retrain(ProcessTrainer(SETTINGS, command=ECHO)))
    assert (outcome.status, outcome.version, outcome.passed) == ("active", 7, True)
    request = outcome.metrics
    assert request["params"] == asdict(PARAMS)
    assert (request["gate_ratio"], request["keep"], request["ask_due"]) == (1.5, 4, True)
    assert (request["threads"], request["omp"], request["nice"]) == (3, "3", 10)
    # The same settings on the other side, the secret included (it connects as the worker).
    assert RecommenderSettings(_env_file=None, **request["settings"]) == SETTINGS
    assert "s3cret" in request["settings"]["postgres_dsn"]


def test_by_default_the_child_leaves_serving_a_core():
    default = RecommenderSettings(_env_file=None)
    assert trainer_threads(default) == max(1, len(os.sched_getaffinity(0)) - 1)
    assert trainer_threads(SETTINGS) == 3


@pytest.mark.parametrize(
    ("out", "returncode", "error", "message"),
    [
        (b'{"busy": "another worker is training"}\n', 0, TrainingBusy, "another worker"),
        (b'{"failed": "ConfigurationError: only 3 interactions"}\n', 0, TrainingFailed, "only 3"),
        (b"", -9, TrainingFailed, "exited with code -9 without a reply"),
        (b"Traceback (most recent", 1, TrainingFailed, "exited with code 1"),
    ],
)
def test_each_reply_is_an_outcome_or_a_failure_of_its_class(out, returncode, error, message):
    with pytest.raises(error, match=message):
        read_reply(out, returncode)


def test_a_child_that_dies_without_replying_is_a_failed_retrain():
    trainer = ProcessTrainer(SETTINGS, command=child("import sys; sys.exit(5)"))
    with pytest.raises(TrainingFailed, match="exited with code 5"):
        asyncio.run(retrain(trainer))
    assert trainer.process is None


def test_cancelling_the_call_ends_the_child():
    trainer = ProcessTrainer(SETTINGS, command=SLEEPER)

    async def scenario() -> int:
        call = asyncio.create_task(retrain(trainer))
        process = await running_child(trainer)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert process.returncode == -signal.SIGTERM
        return process.pid

    assert gone(asyncio.run(scenario()))
    assert trainer.process is None


def test_a_child_deaf_to_sigterm_is_killed_after_the_grace_period():
    deaf = child(
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        " sys.stdin.readline(); print('ready', file=sys.stderr, flush=True); time.sleep(60)"
    )
    trainer = ProcessTrainer(SETTINGS, command=deaf, grace_seconds=0.5)

    async def scenario() -> asyncio.subprocess.Process:
        call = asyncio.create_task(retrain(trainer))
        process = await running_child(trainer)
        await asyncio.sleep(0.5)  # its SIGTERM handler is set by now
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        return process

    assert asyncio.run(scenario()).returncode == -signal.SIGKILL


def test_stopping_the_worker_ends_its_trainer_process_and_counts_no_failure():
    interactions, models = empty()
    interactions.write(taste_clicks())
    trainer = ProcessTrainer(SETTINGS, command=SLEEPER)
    registry = Metrics().registry

    async def nothing(*args) -> None:
        return None

    worker = RecommenderWorker(
        SETTINGS,
        interactions=interactions,
        models=models,
        publish=nothing,
        dead_letter=nothing,
        metrics=RecommenderMetrics.create(Metrics(registry)),
        train=trainer,
    )

    async def scenario() -> asyncio.subprocess.Process:
        await worker.start()
        await worker.check_retrain()
        process = await running_child(trainer)
        await worker.stop()
        return process

    process = asyncio.run(scenario())
    assert process.returncode is not None and gone(process.pid)
    assert worker.training.done() and worker.loaded is None
    assert not registry.get_sample_value("marquee_retrains_total", {"outcome": "failed"})


def test_the_child_exits_when_its_worker_goes_away():
    """A worker killed outright (SIGKILL) cannot terminate its child: the child notices
    the end of its stdin instead, the one pipe only the worker held open."""
    script = (
        "from services.recommender.trainer import exit_with_parent; import time;"
        " exit_with_parent(); time.sleep(60)"
    )
    orphan = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE)
    orphan.stdin.close()
    assert orphan.wait(timeout=30) == PARENT_GONE
