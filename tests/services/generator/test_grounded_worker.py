"""Digests and grounded answers through the worker, on fakes: the prompt holds the items
found, the reply lists them, and a request that cannot be grounded gets one error reply."""

from __future__ import annotations

import asyncio

from services.generator.errors import RecommenderUnavailable
from services.generator.grounding import Grounder
from services.generator.recommendations import RecommendationClient
from services.generator.replies import NOTHING_RELEVANT
from services.generator.retrieval import CatalogEntry
from shared.events.models import Recommendations
from tests.services.generator.test_worker import Harness, request

CATALOG = {
    "heat": CatalogEntry("heat", "Heat", "A detective chases bank robbers in Los Angeles."),
    "toys": CatalogEntry("toys", "Toy Story", "Toys come alive when their owner leaves."),
    "apollo": CatalogEntry("apollo", "Apollo 13", "Astronauts survive an explosion in space."),
}


class FakeCatalog:
    def items(self, ids):
        return {i: CATALOG[i] for i in ids if i in CATALOG}

    def version(self):
        return len(CATALOG), None

    def searchable(self):
        return list(CATALOG.values())


class FakeRecommender:
    def __init__(self, items=("toys", "nowhere", "apollo"), silent=False):
        self.items, self.silent, self.asked = list(items), silent, []

    async def top_items(self, user_id, k, timeout):
        self.asked.append((user_id, k))
        if self.silent:
            raise RecommenderUnavailable(f"the recommender did not answer within {timeout:g} s")
        items = [{"item_id": i, "score": 1.0} for i in self.items[:k]]
        return Recommendations(
            request_id="x", user_id=user_id, items=items, strategy="als", model_version=1
        )


def harness(recommender=None, **settings) -> Harness:
    grounder = Grounder(FakeCatalog(), recommender or FakeRecommender(), digest_items=3)
    return Harness(grounder=grounder, **settings)


def test_a_digest_introduces_the_readers_recommended_items_in_the_catalog():
    recommender = FakeRecommender()
    h = harness(recommender)
    h.send(request("d-1", kind="digest", prompt="", user_id="u1"))
    assert recommender.asked == [("u1", 3)]
    (pending,) = list(h.worker.queue._queue)
    # One generation per item, each prompt holding that item alone.
    assert [part.prompt for part in pending.parts()] == [
        "digest:  [toys] Toy Story",
        "digest:  [apollo] Apollo 13",
    ]
    h.batch()
    assert h.engine.batches == [[part.prompt for part in pending.parts()]]  # one batch
    reply = h.replies()["d-1"]
    assert reply.status == "ok" and reply.item_ids == ["toys", "apollo"]
    # The titles are written verbatim, in order, each over its introduction.
    assert reply.text == (
        "Your personal briefing: 2 picks for you.\n\n"
        "1. Toy Story\nAbout digest: [toys] Toy Story.\n\n"
        "2. Apollo 13\nAbout digest: [apollo] Apollo 13."
    )
    assert reply.completion_tokens == 6 + 6  # the introductions' tokens, added up
    assert reply.impression_id is None  # the recommendation reply carries none
    assert h.acked and h.store.find("d-1")[0].item_ids == ["toys", "apollo"]


def test_a_streamed_digest_streams_its_assembled_text_as_one_chunk():
    h = harness(generator_stream=True)
    h.send(request("d-3", kind="digest", prompt="", user_id="u1"))
    h.batch()
    chunks = [h.worker.chunks.get_nowait() for _ in range(h.worker.chunks.qsize())]
    assert [(c.request_id, c.index) for c in chunks] == [("d-3", 0)]
    assert chunks[0].text == h.replies()["d-3"].text


def test_a_recommender_that_does_not_answer_gets_one_error_reply_naming_it():
    h = harness(FakeRecommender(silent=True))
    h.send(request("d-2", kind="digest", prompt="", user_id="u1"))
    assert h.worker.queue.empty() and len(h.published) == 1 and len(h.acked) == 1
    reply = h.replies()["d-2"]
    assert reply.status == "error" and "the recommender did not answer" in reply.error


def test_a_grounded_answer_cites_what_it_retrieved_and_says_so_when_nothing_is_relevant():
    h = harness()
    h.send(
        request("a-1", kind="assistant", prompt="Which film has bank robbers in Los Angeles?"),
        request("a-2", kind="assistant", prompt="How do I bake a lemon cake?"),
    )
    nothing = h.replies()["a-2"]
    assert nothing.status == "ok" and nothing.text == NOTHING_RELEVANT and nothing.item_ids == []
    h.batch()
    answer = h.replies()["a-1"]
    assert answer.status == "ok" and answer.item_ids == ["heat"]


def test_the_ungrounded_assistant_is_not_grounded():
    h = harness()
    h.send(request("a-3", kind="assistant", prompt="bank robbers", grounded=False))
    h.batch()
    assert h.replies()["a-3"].item_ids is None


def test_the_client_names_the_recommender_when_no_reply_comes():
    from services.generator.settings import GeneratorSettings

    asked = []

    async def publish(event):
        asked.append(event.data)

    client = RecommendationClient(GeneratorSettings(_env_file=None), publish)
    client._ready.set()  # as if its listener had started: the reply never comes

    async def ask():
        try:
            await client.top_items("u1", 3, timeout=0.05)
        except RecommenderUnavailable as exc:
            return str(exc)

    assert "the recommender did not answer within 0.05 s" in asyncio.run(ask())
    assert client._waiting == {}
    assert [(r.user_id, r.k, r.surface) for r in asked] == [("u1", 3, "digest")]
