"""The generator through Kafka at a steady request rate, against the engine alone.

The worker (``marquee serve generator``) gets news requests at half the rate one engine
can answer them one by one, so batches form from overlapping requests without a growing
queue. End-to-end latency is from publishing a request to reading its reply; the baseline
is the same request through the engine in this process, with no Kafka, queue or batching.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid

from kafka import KafkaConsumer, TopicPartition

from services.generator.engine import Engine, GenerationRequest
from services.generator.sampling import SamplingParams
from services.generator.settings import GeneratorSettings
from shared.events import EventCodec
from shared.events.models import ContentRequestEvent
from shared.kafka.client import client_options
from shared.kafka.publisher import Publisher
from shared.topics import full_name

from ._stack import percentile, scratch, worker
from .harness import BenchmarkError, Context, Result, benchmark

NEW_TOKENS = 32
PROMPT = "The city council approved a new tram line through the old town on Tuesday."
REQUESTS = 24


@benchmark(
    "generator_kafka_latency",
    unit="s",
    description=f"""p50 time from publishing a news request ({NEW_TOKENS} new tokens, greedy) to
    reading its reply, at half the engine's one-by-one capacity, against the same request
    through the engine alone in this process""",
    higher_is_better=False,
)
def generator_kafka_latency(ctx: Context) -> Result:
    settings = GeneratorSettings(**ctx.settings.model_dump())
    engine = Engine(settings.model_dir(), settings.runtime_options())
    params = SamplingParams(max_new_tokens=NEW_TOKENS, temperature=0)
    request = GenerationRequest(prompt=engine.render("news", PROMPT), params=params)
    engine.generate(request)  # warm-up
    alone = []
    for _ in range(3):
        started = time.perf_counter()
        engine.generate(request)
        alone.append(time.perf_counter() - started)
    baseline = statistics.median(alone)
    del engine  # the worker gets the cores
    interval = 2 * baseline
    ctx.progress(f"engine alone: {baseline:.2f} s per request; sending one every {interval:.2f} s")

    with scratch(ctx, "gen") as stack, worker(stack, service="generator", wait_for="/readyz"):
        sent: dict[str, float] = {}
        done: dict[str, tuple[float, object]] = {}
        topic = full_name("content-generated", stack.settings.topic_prefix)
        consumer = KafkaConsumer(**client_options(stack.settings), group_id=None)
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        stop = threading.Event()

        def read() -> None:
            codec = EventCodec()
            while not stop.is_set():
                for records in consumer.poll(timeout_ms=200).values():
                    for record in records:
                        reply = codec.decode(record.value).data
                        done.setdefault(reply.request_id, (time.monotonic(), reply))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            with Publisher(stack.settings) as pub:
                start = time.monotonic()
                for n in range(REQUESTS):
                    time.sleep(max(0.0, start + n * interval - time.monotonic()))
                    request_id = f"bench-{uuid.uuid4().hex[:10]}"
                    pub.publish_sync(
                        ContentRequestEvent.create(
                            {
                                "request_id": request_id,
                                "kind": "news",
                                "prompt": PROMPT,
                                "max_new_tokens": NEW_TOKENS,
                                "temperature": 0,
                            }
                        )
                    )
                    sent[request_id] = time.monotonic()
            deadline = time.monotonic() + 120
            while len(done) < REQUESTS and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            stop.set()
            reader.join()
            consumer.close()
    if len(done) < REQUESTS:
        raise BenchmarkError(f"only {len(done)} of {REQUESTS} replies arrived")
    latency = [done[r][0] - sent[r] for r in sent]
    replies = [done[r][1] for r in sent]
    failed = [r for r in replies if r.status != "ok"]
    if failed:
        raise BenchmarkError(f"{len(failed)} error replies, e.g. {failed[0].error}")
    first = [r.timings.queue_seconds + (r.timings.first_token_seconds or 0) for r in replies]
    rates = [
        r.completion_tokens / max(r.timings.total_seconds - r.timings.queue_seconds, 1e-9)
        for r in replies
    ]
    return Result(
        statistics.median(latency),
        "engine alone, one request",
        baseline,
        notes=(
            f"end to end p50 {statistics.median(latency):.2f} s, p95 {percentile(latency, 95):.2f} s",
            f"time to first token (queue + prefill) p50 {statistics.median(first):.2f} s,"
            f" p95 {percentile(first, 95):.2f} s",
            f"tokens/s per request p50 {statistics.median(rates):.1f}",
            f"{REQUESTS} requests, one every {interval:.2f} s",
        ),
    )
