"""The ingest benchmark's baseline: the recommender with interactions on a Faust agent.

``recommender_ingest_throughput`` runs it (``python -m benchmarks._faust_ingest``, a worker
process like ``marquee serve recommender``, settings from the environment): the service as
it is built, except that ``interactions`` are read the way they were before the batch
ingest, through Faust's per-event stream batched by ``take_events``, into the same
``RecommenderWorker.ingest`` (decode, dead letters, one transaction, fold-in).
"""

from __future__ import annotations

from services.recommender.app import build, take_batches
from services.recommender.settings import RecommenderSettings
from shared.config import load_settings
from shared.service import Service, runner
from shared.topics import full_name


def install_faust_ingest(service: Service, worker) -> None:
    settings = service.settings
    topic = service.app.topic(
        full_name("interactions", settings.topic_prefix),
        key_serializer="raw",
        value_serializer="raw",
    )

    @service.app.agent(topic, concurrency=1)
    async def ingest(stream):
        async for batch in take_batches(stream, settings):
            await worker.ingest(batch)


def main() -> None:
    runner.run(build(load_settings(RecommenderSettings), install_ingest=install_faust_ingest))


if __name__ == "__main__":
    main()
