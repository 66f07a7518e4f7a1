"""The recommender's runtime: ingest, fold-in, reloads, scheduled retrains and replies.

A ``mode.Service`` (Faust's pattern for a long-running component: the app starts and
stops it, and cancels a retrain still running at shutdown). ``app.py`` only wires topics,
agents, timers and views to its methods. Its state is attributes (the version served,
the last ingest failure, the running retrain); its collaborators (the interaction and
model stores, publish, dead-letter, the trainer, a clock) come in through the
constructor, so every decision here is unit-tested with in-memory fakes and no broker.
Scheduled retrains run in a child process (:mod:`.trainer`), so serving keeps the
interpreter while one runs.

A batch's offsets are committed after :meth:`RecommenderWorker.ingest` returns, so it
returns only once the batch's write and its dead letters succeeded, retrying until then. Redoing a batch is harmless: every write is
idempotent.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import mode
import numpy as np

from shared.errors import InvalidEvent, is_retriable
from shared.events import EventCodec
from shared.events.envelope import Envelope
from shared.events.models import RecommendationsEvent
from shared.retry import retry_until_done

from . import freshness
from .confidence import Weights
from .content import content_text
from .experiments import ListRequest, RunningExperiments, Served
from .impressions import ImpressionLog
from .metrics import RecommenderMetrics
from .model_store import TrainingBusy
from .persistence import (
    CatalogEntry,
    CatalogRow,
    CatalogStore,
    FactorStore,
    HistoryStore,
    InteractionRow,
)
from .schedule import due_now
from .serving import (
    Loaded,
    adopt_catalog,
    described,
    fit_content_map,
    load_active,
)
from .settings import RecommenderSettings
from .trainer import ProcessTrainer
from .training import Outcome

log = logging.getLogger(__name__)


class Record(Protocol):
    """A consumed Kafka record (a Faust message): what ingest and dead letters read."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


Publish = Callable[[Envelope], Awaitable[None]]
#: A batch decoded: its valid interactions as rows, and each invalid record with its reason.
Classified = tuple[list[InteractionRow], list[tuple[Record, InvalidEvent]]]
#: Texts -> unit vectors (one row each), run in a thread: the content encoder.
Encode = Callable[[list[str]], np.ndarray]
#: ``(record, topic, error)``: send ``record`` of ``topic`` to its DLQ, confirmed.
DeadLetter = Callable[[Record, str, BaseException], Awaitable[None]]
#: One retrain, awaited: ``training.retrain``'s arguments ``(model store, ALS params, *,
#: gate_ratio, keep, due)``; cancelling it must end the retrain. By default a
#: :class:`~.trainer.ProcessTrainer`: the retrain runs in a child process.
Train = Callable[..., Awaitable[Outcome]]


class RecommenderWorker(mode.Service):
    def __init__(
        self,
        settings: RecommenderSettings,
        *,
        interactions: HistoryStore,
        models: FactorStore,
        publish: Publish,
        dead_letter: DeadLetter,
        metrics: RecommenderMetrics,
        catalog: CatalogStore | None = None,
        encode: Encode | None = None,
        content_model: str | None = None,
        codec: EventCodec | None = None,
        counters: dict[str, float] | None = None,
        train: Train | None = None,
        impressions: ImpressionLog | None = None,
        experiments: RunningExperiments | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.interactions = interactions
        self.models = models
        self.catalog = catalog
        #: ``None``: items are stored and served by name, but get no content factors.
        self.encode = encode
        self.content_model = content_model
        self.publish = publish
        self.dead_letter = dead_letter
        self.metrics = metrics
        self.codec = codec or EventCodec()
        self.train = train or ProcessTrainer(settings)
        self.clock = clock
        #: Mints every answer's impression id (and publishes the list, when it is set to).
        self.impressions = impressions or ImpressionLog(None)
        #: The running experiments, read again by :meth:`refresh_experiments` on a timer.
        self.experiments = experiments or RunningExperiments(None)
        self.weights = Weights.from_settings(settings)
        self.policy = settings.retrain_policy()
        #: Totals reported in every heartbeat (the service's ``counters``).
        self.counters = counters if counters is not None else {}
        self.counters.update(interactions_stored=0, dead_letters=0)
        #: The version served; ``None`` until one is active and loaded.
        self.loaded: Loaded | None = None
        #: Why the batch in hand last failed; ``None`` when it did not.
        self.last_failure: str | None = None
        #: The scheduled retrain in progress, if any.
        self.training: asyncio.Future | None = None
        self._reloading = asyncio.Lock()  # the poll timer and a finished retrain may both reload

    async def on_started(self) -> None:
        # What is alive once the worker runs (modules, the app, its clients: ~170k objects)
        # lives as long as the process. Frozen, it is left out of the collector's full
        # passes, each of which held the interpreter for ~200 ms, stalling every request
        # (seen in the reload after a retrain; recommender_serving_p99_during_retrain).
        gc.freeze()
        await self.experiments.refresh()  # then on a timer

    # Readiness (/readyz).

    def ingest_check(self) -> tuple[bool, str]:
        if self.last_failure is not None:
            return False, f"retrying a batch: {self.last_failure}"
        return True, "ok"

    def model_check(self) -> tuple[bool, str]:
        if self.loaded is None:
            return False, "no active model loaded (run `marquee train`)"
        return True, f"model version {self.loaded.version.id}"

    # Ingest.

    async def ingest(self, batch: Sequence[Record], classified: Classified | None = None) -> None:
        """Store ``batch``, retrying until it is stored (its offsets are committed after
        this). ``classified``: :meth:`classify`'s result for it, when the caller decoded
        the batch already (the batch ingest does, in a thread, while the last one is written)."""
        await self._until_stored(
            lambda: self.store_batch(batch, classified), f"interactions batch of {len(batch)}"
        )

    async def _until_stored(self, attempt: Callable[[], Awaitable], what: str) -> None:
        await retry_until_done(
            attempt, what=what, max_delay=self.settings.retry_max_seconds, on_failure=self._failed
        )
        self.last_failure = None

    def _failed(self, exc: BaseException) -> None:
        self.metrics.failures.inc()
        self.last_failure = f"{type(exc).__name__}: {exc}"

    def classify(self, batch: Sequence[Record]) -> Classified:
        """Valid interactions become rows; anything else becomes a dead letter.

        Event by event, not :meth:`EventCodec.decode_all` over the values joined into one
        JSON array: a record's bytes could then end inside its neighbour's (``{A},{B`` and
        ``...}``), and two records invalid on their own would be stored as two valid ones.
        Pure CPU and no shared state: safe to run in a thread."""
        rows, letters = [], []
        for record in batch:
            try:
                parsed = self.codec.decode(record.value, topic="interactions")
            except InvalidEvent as exc:
                letters.append((record, exc))
                continue
            data = parsed.data
            rows.append(
                InteractionRow(
                    event_source=parsed.source,
                    event_id=parsed.id,
                    user_id=data.user_id,
                    item_id=data.item_id,
                    action=data.action,
                    weight=self.weights.of(data),
                    dwell_seconds=data.dwell_seconds,
                    rating=data.rating,
                    occurred_at=parsed.time,
                    kafka_topic=record.topic,
                    kafka_partition=record.partition,
                    kafka_offset=record.offset,
                )
            )
        return rows, letters

    async def store_batch(
        self, batch: Sequence[Record], classified: Classified | None = None
    ) -> int:
        """One attempt at a batch: dead letters, the write, then a fold-in only if something
        new was stored (a redelivered batch changes nothing). Returns how many were new."""
        rows, letters = classified or self.classify(batch)
        letters = list(letters)  # extended below; a retry starts from the classified ones
        for record, exc in letters:
            # Confirmed before the batch is acked: a dead letter is never lost either.
            await self.dead_letter(record, "interactions", exc)
        m = self.metrics
        started = self.clock()
        try:
            new = await asyncio.to_thread(self.interactions.write, rows)
        except Exception as exc:
            if is_retriable(exc):
                raise  # the database is away: the whole batch again, later
            # Something in the batch the database refuses and will refuse again: find it.
            records = {(r.partition, r.offset): r for r in batch}
            new, rows, refused = await self._write_apart(
                rows,
                self.interactions.write,
                lambda row: records[row.kafka_partition, row.kafka_offset],
                "interactions",
                exc,
            )
            letters += refused
        m.write_seconds.observe(self.clock() - started)
        m.consumed.labels("interactions").inc(len(batch))
        m.stored.inc(new)
        m.duplicates.inc(len(rows) - new)
        self.counters["interactions_stored"] += new
        self.counters["dead_letters"] += len(letters)
        if new:
            await self.fold_in(rows)
        return new

    async def _write_apart(
        self,
        rows: list,
        write: Callable[[list], int | None],
        record_of: Callable[[object], Record],
        topic: str,
        failure: BaseException,
    ) -> tuple[int, list, list[tuple[Record, InvalidEvent]]]:
        """Write ``rows`` one at a time after ``failure`` refused them together: each row
        the database refuses for what it holds goes to ``topic``'s DLQ with the reason, the
        rest are stored (only a connection-level failure is raised, to retry the batch).
        Returns (what the writes counted, stored rows, dead letters)."""
        log.warning("the database refused a %s batch (%s); writing it row by row", topic, failure)
        new, stored, refused = 0, [], []
        for row in rows:
            try:
                new += await asyncio.to_thread(write, [row]) or 0
                stored.append(row)
            except Exception as exc:
                if is_retriable(exc):
                    raise
                record = record_of(row)
                reason = InvalidEvent(f"the database refused it: {type(exc).__name__}: {exc}")
                await self.dead_letter(record, topic, reason)
                refused.append((record, reason))
        return new, stored, refused

    async def fold_in(self, rows: list[InteractionRow]) -> None:
        """Refresh the batch's users from their full history, so a click counts at once."""
        loaded = self.loaded
        if loaded is None or not rows:
            return
        started = self.clock()
        done = await freshness.fold_in(
            self.interactions,
            self.models,
            loaded,
            {r.user_id for r in rows},
            {r.item_id for r in rows},
        )
        self.metrics.folded.labels("user").inc(len(done.users))
        self.metrics.folded.labels("item").inc(len(done.items))
        self.metrics.fold_in_seconds.observe(self.clock() - started)

    # The catalog.

    async def ingest_items(self, batch: Sequence[Record]) -> None:
        """Store a batch of ``catalog`` events with their content vectors, and serve the
        change at once: an item hidden or expired leaves the very next answer, a new one
        is recommendable by its content. Retried until stored, like interactions."""
        await self._until_stored(lambda: self.store_items(batch), f"catalog batch of {len(batch)}")

    async def store_items(self, batch: Sequence[Record]) -> None:
        rows = []
        latest: dict[str, tuple[Record, object]] = {}
        for record in batch:
            try:
                parsed = self.codec.decode(record.value, topic="catalog")
            except InvalidEvent as exc:
                await self.dead_letter(record, "catalog", exc)
                self.counters["dead_letters"] += 1
                continue
            latest[parsed.data.item_id] = (record, parsed.data)  # the later version wins
        items = [item for _, item in latest.values()]
        vectors = await self._embed(items)
        for item, vector in zip(items, vectors, strict=True):
            rows.append(
                CatalogRow(
                    item_id=item.item_id,
                    kind=item.kind,
                    title=item.title,
                    summary=item.summary,
                    body=item.body,
                    tags=tuple(item.tags),
                    language=item.language,
                    url=item.url,
                    published_at=item.published_at,
                    expires_at=item.expires_at,
                    hidden=item.hidden,
                    content=vector,
                    content_model=self.content_model if vector is not None else None,
                )
            )
        if self.catalog is None:
            return
        try:
            await asyncio.to_thread(self.catalog.write, rows)
        except Exception as exc:
            if is_retriable(exc):
                raise
            _, rows, refused = await self._write_apart(
                rows, self.catalog.write, lambda row: latest[row.item_id][0], "catalog", exc
            )
            self.counters["dead_letters"] += len(refused)
        self.metrics.consumed.labels("catalog").inc(len(batch))
        self.counters["items_stored"] = self.counters.get("items_stored", 0) + len(rows)
        loaded = self.loaded
        mapped = []
        if loaded is not None:
            entries = await self._learn_content_map(loaded, [row.entry() for row in rows])
            mapped = adopt_catalog(loaded.recommender, loaded.content_map, entries)
        log.info(
            "stored %s catalog items from %s records; %s given factors from their content",
            len(rows),
            len(batch),
            len(mapped),
        )

    async def _embed(self, items: list) -> list[np.ndarray | None]:
        if self.encode is None or not items:
            return [None] * len(items)
        texts = [content_text(i.title, i.tags, i.summary) for i in items]
        vectors = await asyncio.to_thread(self.encode, texts)
        return list(np.asarray(vectors, dtype=np.float32))

    async def adopt_catalog_changes(self) -> None:
        """Take in the catalog changes other workers stored (an item hidden on another
        worker's partition leaves this worker's answers too)."""
        loaded = self.loaded
        if loaded is None or self.catalog is None:
            return
        slack = freshness.COMMIT_SLACK
        since = None if loaded.catalog_from is None else loaded.catalog_from - slack
        try:
            entries, read_at = await asyncio.to_thread(self.catalog.entries, since)
        except Exception as exc:  # noqa: BLE001 - retried on the next tick
            log.warning("reading catalog changes failed: %s", exc)
            return
        entries = await self._learn_content_map(loaded, entries)
        adopt_catalog(loaded.recommender, loaded.content_map, entries)
        loaded.catalog_from = read_at

    async def _learn_content_map(
        self, loaded: Loaded, arrived: list[CatalogEntry]
    ) -> list[CatalogEntry]:
        """A version loaded before the catalog had content has no content map, and would
        map no new item until the next version: learn it as soon as content arrives for
        items the version has factors for, from those factors and every stored item with
        content (what loading does). Returns the entries to adopt: the whole catalog once
        a map is learnt (items stored earlier get mapped factors too), else ``arrived``."""
        rec = loaded.recommender
        if loaded.content_map is not None or self.catalog is None:
            return arrived
        if not any(
            e.content is not None and rec.factors_of("item", e.item_id) is not None for e in arrived
        ):
            return arrived  # nothing the map could learn from
        entries, _ = await asyncio.to_thread(self.catalog.entries)
        # Fitted on the loop, where fold-ins change the factors it reads (~10 ms).
        mapping = fit_content_map(rec, entries)
        if mapping is None:
            return arrived
        loaded.content_map = mapping
        log.info("version %s: content map learnt from the catalog", loaded.version.id)
        return entries

    # The version served.

    async def reload(self) -> None:
        """Serve the active version if it is not the one served: another worker (or
        `marquee train`) may have activated one. Failures leave the old one served."""
        async with self._reloading:
            try:
                await self._reload()
            except Exception as exc:  # noqa: BLE001 - /readyz reports a missing model
                log.warning("loading the active model failed: %s", exc)

    async def _reload(self) -> None:
        active = await asyncio.to_thread(self.models.active)
        current = self.loaded
        if active is None or (current is not None and current.version.id == active.id):
            return
        loaded = await asyncio.to_thread(
            load_active,
            self.interactions,
            self.models,
            self.settings.half_life_seconds(),
            self.catalog,
            self.settings.max_age_seconds(),
            self.settings.shaping(),
        )
        if loaded is None:
            return
        done = await freshness.catch_up(self.interactions, self.models, loaded)
        self.loaded = loaded
        # Batches stored while it caught up were not folded in (no version was served yet):
        # fold them in now that new batches fold into this one.
        await freshness.catch_up(self.interactions, self.models, loaded)
        self.metrics.show(loaded.version)
        log.info("serving version %s; caught up %s users", loaded.version.id, len(done.users))

    async def adopt_fold_ins(self) -> None:
        """Take in the fold-ins other workers stored, so every worker answers alike."""
        loaded = self.loaded
        if loaded is None:
            return
        try:
            self.metrics.adopted.inc(await freshness.sync(self.interactions, self.models, loaded))
        except Exception as exc:  # noqa: BLE001 - retried on the next tick
            log.warning("reading other workers' fold-ins failed: %s", exc)
        await self.adopt_catalog_changes()

    # Scheduled retrains (one at a time across workers: the trainer takes a lock).

    def due(self) -> str | None:
        """Why a retrain is due now, or ``None`` (reads the model store: call in a thread)."""
        return due_now(self.policy, self.models)

    async def check_retrain(self) -> None:
        """Start a retrain unless one is running; it finds out itself whether one is due.
        Training takes minutes: the timer only starts it, so its ticks stay short."""
        if self.training is None or self.training.done():
            self.training = self.add_future(self._retrain())

    async def _retrain(self) -> None:
        try:
            reason = await asyncio.to_thread(self.due)
            if reason is None:
                return
            log.info("retraining: %s", reason)
            started = self.clock()
            outcome = await self.train(
                self.models,
                self.settings.als_params(),
                gate_ratio=self.settings.recommender_quality_gate_ratio,
                keep=self.settings.recommender_keep_versions,
                due=self.due,
            )
        except TrainingBusy:
            return  # another worker is on it
        except Exception as exc:  # noqa: BLE001 - the next check tries again
            self.metrics.retrains.labels("failed").inc()
            log.warning("scheduled retrain failed: %s", exc)
            return
        self.metrics.retrains.labels(outcome.status).inc()
        if outcome.status != "skipped":
            self.metrics.retrain_seconds.observe(self.clock() - started)
            log.info("retrain done: version %s %s", outcome.version, outcome.status)
            await self.reload()

    # Serving (HTTP and Kafka).

    async def refresh_experiments(self) -> None:
        await self.experiments.refresh()

    async def serve(
        self,
        current: Loaded,
        request: ListRequest,
        surface: str | None,
        *,
        answering: str | None = None,
    ) -> tuple[Served, str]:
        """The list for ``request`` (its experiment arm's, if one runs on ``surface``) and
        the id of its impression, which is on its way to ``impressions``."""
        impression_id = self.impressions.mint(answering)
        served = await self.experiments.serve(
            current, self.interactions, request, surface, impression_id
        )
        self.impressions.served(
            request.user_id,
            served.items,
            strategy=served.strategy,
            model_version=current.version.id,
            surface=surface,
            impression_id=impression_id,
            experiment=served.experiment,
            arm=served.arm,
            teams=served.teams,
        )
        return served, impression_id

    # Requests over Kafka.

    async def answer(self, record: Record) -> None:
        """Reply to one request, retrying until the reply is confirmed (then it is acked)."""
        self.metrics.consumed.labels("recommendation-requests").inc()
        await retry_until_done(
            lambda: self.reply_to(record),
            what="recommendation request",
            max_delay=self.settings.retry_max_seconds,
        )

    async def reply_to(self, record: Record) -> None:
        """One reply on ``recommendations`` per valid request, correlated by request_id."""
        try:
            parsed = self.codec.decode(record.value, topic="recommendation-requests")
        except InvalidEvent as exc:
            await self.dead_letter(record, "recommendation-requests", exc)
            return
        request = parsed.data
        reply = {"request_id": request.request_id, "user_id": request.user_id, "items": []}
        current = self.loaded
        if current is None:
            reply.update(strategy="popularity", error="no active model yet")
        else:
            served, impression_id = await self.serve(
                current,
                ListRequest(
                    request.user_id,
                    request.k,
                    request.exclude_seen,
                    request.kind,
                    request.max_per_tag,
                ),
                request.surface,
                answering=parsed.idempotency_key,
            )
            reply.update(
                items=described(current.recommender, served.items),
                strategy=served.strategy,
                model_version=current.version.id,
                impression_id=impression_id,
            )
        await self.publish(RecommendationsEvent.create(reply, source="urn:marquee:recommender"))
