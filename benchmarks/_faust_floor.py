"""The framework's own ceiling: a Faust worker that batches like the recommender, then nothing.

``recommender_ingest_throughput`` runs it (``python -m benchmarks._faust_floor EVENTS``, a
worker process like the recommender, settings from the environment) to tell the cost of
Faust's per-event machinery apart from the recommender's own work: the same app factory,
the same ``take_events`` batching, no decoding and no database. It prints one line,
``faust-floor {"rate": ...}``, once it has seen EVENTS events, and stops itself.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from services.recommender.settings import RecommenderSettings
from shared.config import load_settings
from shared.service import create_app, runner
from shared.topics import full_name

MARKER = "faust-floor"


def main(expected: int) -> None:
    settings = load_settings(RecommenderSettings)
    service = create_app(MARKER, settings)
    topic = service.app.topic(
        full_name("interactions", settings.topic_prefix),
        key_serializer="raw",
        value_serializer="raw",
    )
    seen, first, first_size = 0, 0.0, 0

    @service.app.agent(topic, concurrency=1)
    async def drain(stream):
        nonlocal seen, first, first_size
        batches = stream.take_events(
            settings.recommender_ingest_batch_size, within=settings.recommender_ingest_batch_seconds
        )
        async for events in batches:
            now = time.perf_counter()
            if not seen:
                first, first_size = now, len(events)
            seen += len(events)
            if seen >= expected and now > first:
                # Timed like the worker's transactions: first batch to last.
                rate = (seen - first_size) / (now - first)
                print(f"{MARKER} {json.dumps({'rate': rate})}", flush=True)
                os.kill(os.getpid(), signal.SIGTERM)  # the worker's own graceful stop

    runner.run(service)


if __name__ == "__main__":
    main(int(sys.argv[1]))
