"""Personal briefings end to end: a real recommender (MovieLens-100k, trained) and a real
generator (default model) on the scratch stack; 50 readers' digests, one at a time.

``digest_grounding``: the share of the items the recommender picked for each reader
(asked just before the digest, as the generator asks) whose title (or its most
distinctive word) the briefing names, against the same template rendered without the
item (the ungrounded baseline), generated in this process once the workers stopped. An
item the briefing leaves out counts as not named. The notes say how often the model's own
introductions (the text under each title) name their item too.
``digest_latency_p50``: request published -> reply read, against the engine alone on the
ungrounded prompt; the recommender's round trip over Kafka is measured on its own too.
Both figures come from one run (the second asked in a process reuses the first's).
"""

from __future__ import annotations

import re
import statistics
import threading
import time
import uuid

from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import bindparam, text

from services.generator.engine import Engine, GenerationRequest
from services.generator.sampling import SamplingParams
from services.generator.settings import GeneratorSettings
from shared.data import movielens
from shared.events import EventCodec
from shared.events.models import ContentRequestEvent, RecommendationRequestEvent
from shared.kafka.client import client_options
from shared.kafka.publisher import Publisher
from shared.topics import full_name

from ._stack import percentile, scratch, trained_worker, worker
from .harness import BenchmarkError, Context, Result, benchmark

USERS = 50
ITEMS = 3
NEW_TOKENS = 96
TIMEOUT_SECONDS = 120.0
#: Timed runs of the engine-alone baseline (greedy, so each writes the same text).
BASELINE_RUNS = 3
_STOP = {"the", "and", "of", "a", "an", "in", "to", "for", "on", "la", "le", "les", "de"}


def describe_films(stack) -> None:
    """The ingested items' titles and genres as their catalog rows (as `catalog` would)."""
    films = {f.item_id: f for f in movielens.load_films()}
    with stack.engine.begin() as conn:
        for item_id in [r[0] for r in conn.execute(text("SELECT item_id FROM items"))]:
            f = films[item_id]
            year = f" ({f.year})" if f.year else ""
            conn.execute(
                text("UPDATE items SET title = :t, summary = :s WHERE item_id = :i"),
                {"t": f"{f.title}{year}", "s": ", ".join(f.genres) + year, "i": item_id},
            )


def mentioned(title: str, briefing: str) -> bool:
    """The title without its year, or its longest word, in the briefing (any case)."""
    name = re.sub(r"\s*\(\d{4}\)$", "", title).lower()
    words = [w for w in re.findall(r"[a-z0-9']+", name) if w not in _STOP]
    key = max(words, key=len, default=name)
    body = briefing.lower()
    return name in body or (len(key) >= 4 and key in body)


def introductions(briefing: str) -> dict[int, str]:
    """The text under each numbered title of a briefing (``n. title`` then its
    introduction), by its number."""
    found = {}
    for block in briefing.split("\n\n"):
        head, _, intro = block.partition("\n")
        number = re.match(r"(\d+)\. ", head)
        if number:
            found[int(number.group(1))] = intro
    return found


class Replies:
    """Every reply on ``topic`` read in a thread, by the correlation id."""

    def __init__(self, settings, base: str) -> None:
        topic = full_name(base, settings.topic_prefix)
        self.base, self.got, self._stop = base, {}, threading.Event()
        self.consumer = KafkaConsumer(**client_options(settings), group_id=None)
        parts = [TopicPartition(topic, p) for p in self.consumer.partitions_for_topic(topic)]
        self.consumer.assign(parts)
        self.consumer.seek_to_end(*parts)
        for tp in parts:
            self.consumer.position(tp)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        codec = EventCodec()
        while not self._stop.is_set():
            for records in self.consumer.poll(timeout_ms=100).values():
                for record in records:
                    reply = codec.decode(record.value, topic=self.base).data
                    self.got.setdefault(reply.request_id, (time.monotonic(), reply))

    def wait(self, request_id: str):
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while request_id not in self.got:
            if time.monotonic() > deadline:
                raise BenchmarkError(f"no reply to {request_id} on {self.base}")
            time.sleep(0.01)
        return self.got[request_id]

    def close(self) -> None:
        self._stop.set()
        self.thread.join()
        self.consumer.close()


#: The one run both figures come from, once made in this process.
_RUNS: dict[str, dict] = {}


def _run(ctx: Context) -> dict:
    if "run" not in _RUNS:
        _RUNS["run"] = _measure(ctx)
    return _RUNS["run"]


def _measure(ctx: Context) -> dict:
    users = [str(n) for n in range(1, USERS + 1)]
    briefings, picked, latency, round_trips = {}, {}, [], []
    with scratch(ctx, "digest") as stack:
        with trained_worker(stack, before_training=describe_films) as recommender:
            ctx.progress("starting the generator")
            with worker(stack, service="generator", wait_for="/readyz"):
                recs = Replies(stack.settings, "recommendations")
                generated = Replies(stack.settings, "content-generated")
                try:
                    with Publisher(stack.settings) as pub:
                        for user in users:
                            rid = f"bench-rt-{uuid.uuid4().hex[:8]}"
                            ask = {"request_id": rid, "user_id": user, "k": ITEMS}
                            sent = time.monotonic()
                            pub.publish_sync(RecommendationRequestEvent.create(ask))
                            at, recommended = recs.wait(rid)
                            round_trips.append(at - sent)
                            picked[user] = [item.item_id for item in recommended.items]
                            rid = f"bench-digest-{user}-{uuid.uuid4().hex[:6]}"
                            request = {
                                "request_id": rid,
                                "kind": "digest",
                                "user_id": user,
                                "max_items": ITEMS,
                                "max_new_tokens": NEW_TOKENS,
                                "temperature": 0,
                            }
                            sent = time.monotonic()
                            pub.publish_sync(ContentRequestEvent.create(request))
                            at, reply = generated.wait(rid)
                            if reply.status != "ok":
                                raise BenchmarkError(f"digest for {user}: {reply.error}")
                            latency.append(at - sent)
                            briefings[user] = reply
                            if len(briefings) % 10 == 0:
                                ctx.progress(f"{len(briefings)} of {USERS} briefings")
                finally:
                    recs.close()
                    generated.close()
            del recommender
        ids = sorted({i for user in users for i in picked[user] + briefings[user].item_ids})
        query = text("SELECT item_id, title FROM items WHERE item_id IN :ids").bindparams(
            bindparam("ids", expanding=True)
        )
        with stack.engine.connect() as conn:
            titles = dict(conn.execute(query, {"ids": ids}).all())
    ctx.progress("the ungrounded baseline, in this process")
    settings = GeneratorSettings(**ctx.settings.model_dump())
    engine = Engine(settings.model_dir(), settings.runtime_options())
    params = SamplingParams(max_new_tokens=NEW_TOKENS, temperature=0)
    baseline = [GenerationRequest(prompt=engine.render("digest", "", []), params=params)]
    engine.generate_batch(baseline)  # untimed: a cold session's first run is far slower
    alone_runs = []
    for _ in range(BASELINE_RUNS):
        started = time.monotonic()
        (ungrounded,) = engine.generate_batch(baseline)
        alone_runs.append(time.monotonic() - started)
    alone = statistics.median(alone_runs)
    pairs = [(user, i) for user in users for i in picked[user]]
    named = sum(
        i in briefings[user].item_ids and mentioned(titles[i], briefings[user].text)
        for user, i in pairs
    )
    named_without = sum(mentioned(titles[i], ungrounded.text) for _, i in pairs)
    intros = [
        (titles[i], introductions(briefings[user].text).get(i_n + 1, ""))
        for user in users
        for i_n, i in enumerate(briefings[user].item_ids)
    ]
    total = len(pairs)
    return {
        "grounded": named / total,
        "ungrounded": named_without / total,
        "total": total,
        "introduced": sum(len(briefings[u].item_ids) for u in users),
        "same_lists": sum(briefings[u].item_ids == picked[u] for u in users),
        "intros_naming": sum(mentioned(t, intro) for t, intro in intros) / max(len(intros), 1),
        "latency": latency,
        "round_trips": round_trips,
        "alone": alone,
        "distinct": len({tuple(r.item_ids) for r in briefings.values()}),
    }


@benchmark(
    "digest_grounding",
    unit="share",
    target_ratio=3.0,
    target_range=(0.6, None),
    description=f"""
        Share of the recommended items ({ITEMS} per reader as the recommender lists them,
        {USERS} MovieLens readers, recommender trained on MovieLens-100k) whose title, or
        its longest word, the briefing names (digest kind: one introduction per item
        under its title, default model, greedy, {NEW_TOKENS} new tokens in all); an item
        left out counts as missed. Baseline: the same template without the item (the
        ungrounded prompt), checked against the same items; floored at one mention so a
        ratio exists. Targets: share ≥ 0.6 and ≥ 3× the baseline.
    """,
)
def digest_grounding(ctx: Context) -> Result:
    run = _run(ctx)
    floor = 1 / run["total"]
    return Result(
        run["grounded"],
        "same prompt without the items" + (" (floored)" if run["ungrounded"] < floor else ""),
        max(run["ungrounded"], floor),
        notes=(
            f"grounded {run['grounded']:.3f}, ungrounded {run['ungrounded']:.3f} over "
            f"{run['total']} recommended items; {run['distinct']} distinct item lists of {USERS}",
            f"{run['introduced']} items introduced; {run['same_lists']} of {USERS} briefings"
            " introduce exactly the recommender's list",
            f"the model's own introductions (under each title) name their item in "
            f"{run['intros_naming']:.3f} of them",
            "absolute target share ≥ 0.6: " + ("met" if run["grounded"] >= 0.6 else "MISSED"),
        ),
    )


@benchmark(
    "digest_latency_p50",
    unit="s",
    higher_is_better=False,
    description=f"""
        p50 time from publishing a digest request ({ITEMS} items, one introduction each
        in one engine batch, {NEW_TOKENS} new tokens in all, greedy) to reading its reply,
        one reader at a time: the generator asks the recommender over Kafka, reads the
        catalog, generates. Baseline: the engine alone in this process on the ungrounded
        digest prompt ({NEW_TOKENS} new tokens in one generation; median of
        {BASELINE_RUNS} runs after an untimed one). The recommender's own round trip
        (`recommendation-requests` -> `recommendations`, measured from outside just before
        each digest) is in the notes.
    """,
)
def digest_latency_p50(ctx: Context) -> Result:
    run = _run(ctx)
    latency, trips = run["latency"], run["round_trips"]
    return Result(
        statistics.median(latency),
        "engine alone, ungrounded prompt",
        run["alone"],
        notes=(
            f"digest p50 {statistics.median(latency):.2f} s, p95 {percentile(latency, 95):.2f} s",
            f"recommender round trip p50 {statistics.median(trips) * 1000:.1f} ms,"
            f" p95 {percentile(trips, 95) * 1000:.1f} ms",
        ),
    )
