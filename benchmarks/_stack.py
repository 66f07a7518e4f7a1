"""A scratch recommender stack for benchmarks: fresh topics and schema, a real worker.

Every recommender benchmark runs against the dev stack (``make up``) under its own topic
prefix and Postgres schema, with the worker as a subprocess (``marquee serve recommender``,
exactly as users run it), and removes all of it afterwards.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError
from sqlalchemy import Engine, text

from services.recommender.settings import RecommenderSettings
from shared.data import movielens
from shared.db import make_engine, upgrade
from shared.db.engine import quoted_schema
from shared.events import InteractionEvent
from shared.kafka.admin import ensure_from_settings
from shared.kafka.client import client_options
from shared.kafka.publisher import Publisher
from shared.topics import full_name

from .harness import BenchmarkError, Context, Result

ROOT = Path(__file__).resolve().parent.parent
SERVE = (sys.executable, "-m", "shared.cli.main", "serve")
TRAIN = (sys.executable, "-m", "shared.cli.main", "train")
#: Scheduled retrains (on by default in the worker) would compete for the CPU or swap the
#: model mid-measurement; benchmarks train when they mean to.
NO_RETRAINS = {"MARQUEE_RECOMMENDER_RETRAIN_CHECK_SECONDS": "0"}
#: Pre-producing is untimed: bigger batches get the events there sooner (well under the
#: broker's 1 MiB limit on a record batch).
FAST_PRODUCER = {"linger_ms": 50, "batch_size": 256 * 1024}


@dataclass
class Scratch:
    """One benchmark's private corner of the dev stack."""

    settings: RecommenderSettings
    engine: Engine
    admin: KafkaAdminClient
    workdir: Path
    progress: Callable[[str], None]

    @property
    def interactions_topic(self) -> str:
        return full_name("interactions", self.settings.topic_prefix)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a ``marquee`` subprocess on this prefix and schema only."""
        s = self.settings
        return {
            **os.environ,
            "MARQUEE_ENV_FILE": "",  # nothing from .run/marquee.env leaks in
            "MARQUEE_KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
            "MARQUEE_POSTGRES_DSN": s.postgres_dsn.get_secret_value(),
            "MARQUEE_POSTGRES_SCHEMA": s.postgres_schema,
            "MARQUEE_TOPIC_PREFIX": s.topic_prefix,
            "MARQUEE_KAFKA_CLIENT_ID": s.kafka_client_id,
            "MARQUEE_LOG_LEVEL": "WARNING",
            **extra,
        }

    def count(self, table: str = "interactions") -> int:
        with self.engine.connect() as conn:
            return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()

    def wait_for_rows(self, expected: int, *, timeout: float, every: float = 1.0) -> None:
        """Poll until ``expected`` interactions are stored (cheap: one count per ``every``)."""
        deadline = time.monotonic() + timeout
        last_report = 0.0
        while (stored := self.count()) < expected:
            if time.monotonic() > deadline:
                raise BenchmarkError(
                    f"only {stored:,} of {expected:,} interactions stored after {timeout:.0f} s"
                )
            if time.monotonic() - last_report > 10:
                self.progress(f"  {stored:,} / {expected:,} interactions stored")
                last_report = time.monotonic()
            time.sleep(every)

    def train(self) -> None:
        """``marquee train``, as an operator runs it, on this schema."""
        done = subprocess.run(
            TRAIN, env=self.env(), capture_output=True, text=True, timeout=900, cwd=ROOT
        )
        if done.returncode != 0:
            raise BenchmarkError(f"marquee train failed: {(done.stdout + done.stderr)[-2000:]}")

    def forget_group(self, group: str) -> None:
        """Delete a consumer group (it must be empty), so its next reader starts afresh."""
        error = self.admin.delete_groups([group]).get(group)
        if error != "OK":
            raise BenchmarkError(f"could not delete consumer group {group}: {error}")


@contextmanager
def scratch(ctx: Context, label: str) -> Iterator[Scratch]:
    """Fresh topics (the registry's, under a new prefix) and a fresh migrated schema."""
    tag = f"{label}{uuid.uuid4().hex[:6]}"
    settings = RecommenderSettings(
        **ctx.settings.model_dump()
        | {
            "topic_prefix": f"bench-{tag}.",
            "postgres_schema": f"bench_{tag}",
            "kafka_client_id": f"bench-{tag}",
        }
    )
    admin = KafkaAdminClient(**client_options(settings))
    engine = make_engine(settings)
    with tempfile.TemporaryDirectory(prefix=f"marquee-bench-{tag}-") as workdir:
        try:
            ensure_from_settings(admin, settings)
            upgrade(engine, settings.postgres_schema)
            ctx.progress(f"scratch stack: topics {settings.topic_prefix}*, schema {tag}")
            yield Scratch(settings, engine, admin, Path(workdir), ctx.progress)
        finally:
            _cleanup(settings, engine, admin, ctx.progress)


def _cleanup(settings, engine: Engine, admin: KafkaAdminClient, progress) -> None:
    try:
        with engine.begin() as conn:
            conn.execute(
                text(f"DROP SCHEMA IF EXISTS {quoted_schema(settings.postgres_schema)} CASCADE")
            )
    finally:
        engine.dispose()
    try:
        # Faust's own topics (``<app id>-__assignor-__leader``) carry the prefix too.
        mine = [t for t in admin.list_topics() if t.startswith(settings.topic_prefix)]
        if mine:
            admin.delete_topics(mine)
        groups = [
            g["group_id"]
            for g in admin.list_groups()
            if g["group_id"].startswith(settings.topic_prefix)
        ]
        if groups:
            admin.delete_groups(groups)
    except KafkaError as exc:
        # Leftovers are harmless but clutter the broker: say what, and go on.
        progress(f"warning: could not clean up {settings.topic_prefix}* on Kafka ({exc})")
    finally:
        admin.close()


# -- the worker ----------------------------------------------------------------------------
@dataclass
class Worker:
    proc: subprocess.Popen
    port: int
    log_path: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


class Client:
    """GET JSON from a worker over one keep-alive connection (what a real caller does)."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def get(self, path: str) -> dict:
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise BenchmarkError(f"GET {path} answered {response.status}: {body[:300]!r}")
        return json.loads(body)

    def recommended(self, user: str, k: int = 10) -> list[str]:
        """The user's recommendations (seen items excluded), best first."""
        body = self.get(f"/users/{user}/recommendations?k={k}&exclude_seen=true")
        return [item["item_id"] for item in body["items"]]

    def close(self) -> None:
        self.connection.close()


def machine_load() -> str:
    """A note for results: how busy the machine was (others' work inflates every figure)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"1-minute load average at the end: {os.getloadavg()[0]:.1f} on {cpus} CPUs"


#: Between two looks at the answer and the database; bounds the error of each sample.
POLL_SECONDS = 0.005
PROBE_TIMEOUT_SECONDS = 10.0


@dataclass
class Probe:
    """One publish-to-serve sample: the event to publish, the SQL that finds its row
    committed, and whether an answer over HTTP reflects it yet."""

    event: Any
    stored_sql: str
    stored_params: dict[str, Any]
    served: Callable[[], bool]
    what: str  # names the sample in a timeout, e.g. "user 5's like of 50"


def publish_then_poll(
    stack: Scratch,
    running: Worker,
    samples: int,
    seed: int,
    probe: Callable[[Client, int, str], Probe],
    ctx: Context,
    noun: str,
    served_as: str,
) -> tuple[list[float], list[float]]:
    """Milliseconds from each confirmed publish to (served, stored), one sample at a time
    for distinct MovieLens users; ``probe(client, n, user)`` makes sample n."""
    rng = random.Random(seed)
    users = [str(u) for u in rng.sample(range(1, 944), samples)]  # MovieLens user ids
    client = Client(running.port)
    served: list[float] = []
    stored: list[float] = []
    try:
        with Publisher(stack.settings) as publisher:
            for n, user in enumerate(users):
                # Desynchronise from the worker's batch timer, as real publishes are.
                time.sleep(rng.uniform(0.0, stack.settings.recommender_ingest_batch_seconds))
                sample = probe(client, n, user)
                started = time.perf_counter()
                publisher.publish_sync(sample.event)
                row, answer = _poll(stack, sample)
                stored.append((row - started) * 1000)
                served.append((answer - started) * 1000)
                if n % 10 == 9:
                    ctx.progress(
                        f"{n + 1}/{samples} {noun}: {served_as} p50 "
                        f"{statistics.median(served):.0f} ms"
                    )
    finally:
        client.close()
    return served, stored


def _poll(stack: Scratch, sample: Probe) -> tuple[float, float]:
    """When the sample's row was first seen committed, and when an answer first showed it."""
    row = answer = None
    deadline = time.perf_counter() + PROBE_TIMEOUT_SECONDS
    with stack.engine.connect() as conn:
        while row is None or answer is None:
            if row is None and conn.execute(text(sample.stored_sql), sample.stored_params).first():
                row = time.perf_counter()
            conn.rollback()  # a fresh snapshot for the next look
            if answer is None and sample.served():
                answer = time.perf_counter()
            if time.perf_counter() > deadline:
                raise BenchmarkError(
                    f"{sample.what} did not show within {PROBE_TIMEOUT_SECONDS:.0f} s "
                    f"(row stored: {row is not None}, served: {answer is not None})"
                )
            time.sleep(POLL_SECONDS)
    return row, answer


def publish_to_serve(
    stack: Scratch,
    served: list[float],
    stored: list[float],
    *,
    what: str,
    served_as: str,
    target_p95_ms: float,
) -> Result:
    """The p95 of ``served`` (ms from publish to the answer that reflects it) against the
    p95 of ``stored`` (ms from the same publishes to their rows committed), with notes."""
    value = percentile(served, 95)
    batching = (
        stack.settings.recommender_ingest_batch_size,
        stack.settings.recommender_ingest_batch_seconds,
    )
    return Result(
        value=value,
        baseline_name="publish → row committed p95",
        baseline_value=percentile(stored, 95),
        notes=(
            f"{len(served)} {what}; batches of {batching[0]:,} events or {batching[1]:g} s",
            f"{served_as}: p50 {statistics.median(served):.0f} ms, p95 {value:.0f} ms, "
            f"max {max(served):.0f} ms",
            f"stored: p50 {statistics.median(stored):.0f} ms, "
            f"p95 {percentile(stored, 95):.0f} ms, max {max(stored):.0f} ms",
            f"absolute target p95 ≤ {target_p95_ms:,.0f} ms: "
            + ("met" if value <= target_p95_ms else "MISSED"),
            machine_load(),
        ),
    )


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile (1-99), interpolated between the nearest ranks."""
    if len(values) < 2:
        raise BenchmarkError(f"{len(values)} sample(s) are too few for a percentile")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def open_loop(count: int, rate: float, send: Callable[[int, float], Awaitable[None]]) -> None:
    """Start ``send(n, due)`` for n = 0..count-1 at ``rate`` a second on the event loop's
    clock, whatever the answers do (an open loop: a slow answer never delays the next
    request), and wait for them all."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    tasks = []
    for n in range(count):
        due = start + n / rate
        if (delay := due - loop.time()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(n, due)))
    await asyncio.gather(*tasks)


@contextmanager
def worker(
    stack: Scratch,
    *,
    wait_for: str = "/livez",
    service: str = "recommender",
    command: Sequence[str] | None = None,
    **env: str,
) -> Iterator[Worker]:
    """``marquee serve <service>`` (or ``command``, a worker of a benchmark's own) on the
    scratch stack, until ``wait_for`` answers 200.

    /livez suits ingest-only runs (no model: the worker stores but is rightly not ready);
    /readyz waits for an active model as well. SIGTERM afterwards, SIGKILL if it hangs.
    """
    port = free_port()
    log_path = stack.workdir / f"worker-{port}.log"
    with log_path.open("a") as log:
        proc = subprocess.Popen(
            list(command or (*SERVE, service)),
            env=stack.env(MARQUEE_HTTP_PORT=str(port), **env),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    running = Worker(proc, port, log_path)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if http_status(running.url(wait_for)) == 200:
                    break
            except OSError:
                pass  # not listening yet
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchmarkError(
                    f"the {service} worker never answered {wait_for} with 200:\n"
                    f"{running.log_tail()}"
                )
            time.sleep(0.25)
        yield running
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- data ------------------------------------------------------------------------------------
def movielens_events(copies: int = 1) -> Iterator[InteractionEvent]:
    """MovieLens-100k as interactions, ``copies`` times over with distinct event ids.

    The first copy is exactly what ``marquee replay movielens`` publishes.
    """
    for copy in range(copies):
        for event in movielens.events():
            yield event if copy == 0 else event.model_copy(update={"id": f"{event.id}~{copy}"})


def publish(stack: Scratch, events: Iterable[InteractionEvent]) -> int:
    """Publish through the SDK and wait until the broker confirmed every event."""
    started = time.monotonic()
    with Publisher(stack.settings, **FAST_PRODUCER) as publisher:
        report = publisher.publish_many(events, timeout=600)
    if problems := report.problems():
        raise BenchmarkError(f"{len(problems):,} event(s) not published, e.g. {problems[0]}")
    sent = report.accepted
    stack.progress(
        f"published {sent:,} interactions in {time.monotonic() - started:.0f} s (untimed)"
    )
    return sent


def seed_movielens(stack: Scratch) -> int:
    """MovieLens-100k stored as users' clicks are: published, ingested by a worker (stopped
    afterwards). Returns how many interactions are stored."""
    sent = publish(stack, movielens_events())
    with worker(stack, **NO_RETRAINS):
        stack.wait_for_rows(sent, timeout=600)
    return sent


@contextmanager
def trained_worker(
    stack: Scratch, *, before_training: Callable[[Scratch], None] | None = None, **env: str
) -> Iterator[Worker]:
    """A worker serving a model trained on MovieLens-100k, ingested through the worker itself.

    ``before_training`` runs once the worker has stored the ratings (it may publish what
    the worker should hold when the model loads, and wait for it). The model is polled
    every second, so it is loaded soon after ``marquee train``.
    """
    sent = publish(stack, movielens_events())
    env = {"MARQUEE_RECOMMENDER_MODEL_POLL_SECONDS": "1", **NO_RETRAINS, **env}
    with worker(stack, **env) as running:
        stack.wait_for_rows(sent, timeout=600)
        if before_training is not None:
            before_training(stack)
        stack.progress("ingested MovieLens-100k; training (marquee train)")
        stack.train()
        deadline = time.monotonic() + 60
        while http_status(running.url("/readyz")) != 200:
            if time.monotonic() > deadline or running.proc.poll() is not None:
                raise BenchmarkError(f"the worker never loaded the model:\n{running.log_tail()}")
            time.sleep(0.25)
        yield running
