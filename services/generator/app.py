"""The generator's Faust app: ``content-requests`` in, exactly one ``content-generated`` out.

Wiring only: the topic, its agent, the health checks and the metrics, over the
:class:`~.worker.GeneratorWorker` that decides what each request, copy and batch gets
(its module explains offsets and acks). The agent's stream does not ack by itself
(``noack``): the worker acks a request once its reply is stored and published, so Faust,
which commits an offset only once every offset below it is acked, never counts a request
as done before its reply exists. Requests are costly, so Faust fetches no further ahead
than the worker's queue holds: a full queue stops the agent, a full buffer stops fetching.
"""

from __future__ import annotations

from shared.db import make_engine
from shared.service import Service, create_app
from shared.topics import full_name

from .catalog_reader import CatalogReader
from .content_store import ContentStore
from .grounding import Grounder
from .metrics import GeneratorMetrics
from .recommendations import RecommendationClient
from .settings import GeneratorSettings
from .worker import GeneratorWorker


def build(settings: GeneratorSettings) -> Service:
    service = create_app("generator", settings, stream_buffer=settings.generator_queue_size)
    app = service.app
    # Faust would otherwise wait, on shutdown and on every rebalance, until each request
    # taken is acked, that is answered: the whole queue, generated first (a SIGTERM then
    # needed SIGKILL). Unanswered requests stay unacked and go to the next owner, and a
    # request answered twice gets the stored reply twice, identical.
    app.conf.stream_wait_empty = False
    db = make_engine(settings)
    recommender = RecommendationClient(settings, service.publish)
    app.service(recommender)  # its listener on `recommendations` runs with the app
    grounder = Grounder(
        CatalogReader(db),
        recommender,
        encoder=settings.content_encoder,
        digest_items=settings.generator_digest_items,
        answer_items=settings.generator_answer_items,
        recommender_timeout=settings.generator_recommender_timeout_seconds,
    )
    worker = GeneratorWorker(
        settings,
        store=ContentStore(db),
        publish=service.publish,
        dead_letter=service.dead_letter,
        engine_factory=settings.load_engine,
        metrics=GeneratorMetrics.create(service.metrics),
        codec=service.codec,
        counters=service.counters,  # reported in every heartbeat
        grounder=grounder,
    )
    app.service(worker)  # its loops (model, batcher, watchdog, token stream) run with the app

    service.require_assignment()
    service.health.add("model", worker.model_check)
    service.health.add("failures", worker.failures_check)

    topic = app.topic(
        full_name("content-requests", settings.topic_prefix),
        key_serializer="raw",
        value_serializer="raw",
    )

    @app.agent(topic, concurrency=1)
    async def accept(stream):
        requests = stream.noack()  # the worker acks each request once it is answered
        await worker.accept(requests.events(), requests.ack)

    return service
