"""The impression log: ids for every answer, publishing off the hot path, failures counted."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from services.recommender.impressions import ImpressionLog
from shared.metrics import Metrics

ITEMS = [("i-1", 0.9), ("i-2", 0.5)]


def outcomes():
    return Metrics(CollectorRegistry()).counter("marquee_impressions_total", "t", ("outcome",))


def count(counter, outcome: str) -> float:
    return counter.labels(outcome)._value.get()


def test_the_answer_does_not_wait_for_the_broker_and_the_list_is_published_with_positions():
    published, gate = [], asyncio.Event()

    async def slow_publish(event):
        await gate.wait()
        published.append(event)

    async def scenario():
        log = ImpressionLog(slow_publish, counter := outcomes())
        impression_id = log.served("u-1", ITEMS, strategy="als", model_version=4, surface="home")
        assert published == [] and len(log.in_flight) == 1  # answered before the publish
        gate.set()
        await log.drain()
        return impression_id, counter

    impression_id, counter = asyncio.run(scenario())
    (event,) = published
    assert event.data.impression_id == impression_id
    assert [(i.item_id, i.position) for i in event.data.items] == [("i-1", 1), ("i-2", 2)]
    assert (event.data.strategy, event.data.model_version, event.data.surface) == ("als", 4, "home")
    assert count(counter, "published") == 1


def test_a_failed_publish_is_counted_not_raised():
    async def broken(event):
        raise ConnectionError("broker gone")

    async def scenario():
        log = ImpressionLog(broken, counter := outcomes())
        log.served("u-1", ITEMS, strategy="popularity", model_version=None)
        await log.drain()
        return counter

    counter = asyncio.run(scenario())
    assert count(counter, "failed") == 1


def test_too_many_in_flight_are_dropped_and_counted():
    async def never(event):
        await asyncio.Event().wait()

    async def scenario():
        log = ImpressionLog(never, counter := outcomes(), max_in_flight=2)
        ids = {log.served("u-1", ITEMS, strategy="als", model_version=1) for _ in range(3)}
        for task in log.in_flight:
            task.cancel()
        return ids, counter

    ids, counter = asyncio.run(scenario())
    assert len(ids) == 3 and count(counter, "dropped") == 1


def test_turned_off_it_still_mints_ids():
    log = ImpressionLog(None)
    assert log.served("u", ITEMS, strategy="als", model_version=1) != log.served(
        "u", ITEMS, strategy="als", model_version=1
    )


def test_a_retried_answer_to_one_request_names_the_same_impression():
    log = ImpressionLog(None)
    first = log.served("u", ITEMS, strategy="als", model_version=1, answering="urn:app/req-1")
    again = log.served("u", ITEMS, strategy="als", model_version=1, answering="urn:app/req-1")
    other = log.served("u", ITEMS, strategy="als", model_version=1, answering="urn:app/req-2")
    assert first == again != other
