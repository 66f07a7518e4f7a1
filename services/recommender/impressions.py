"""Impressions: every list the recommender serves gets an id, and is published off the hot path.

The answer never waits for the broker: the impression is handed to a background task that
publishes it through the service's producer (which batches it with others, and confirms it)
and counts the outcome. A failed publish is logged and counted, never retried: an
impression is a measurement, and retrying one for minutes would hold memory for a list the
reader has long scrolled past. Too many still in flight (a broker down) are counted as
dropped instead of queued without bound.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import Counter

from shared.events.envelope import Envelope
from shared.events.models import ImpressionEvent

log = logging.getLogger(__name__)

SOURCE = "urn:marquee:recommender"
Publish = Callable[[Envelope], Awaitable[None]]


class ImpressionLog:
    """Mints impression ids; publishes each served list when ``publish`` is given."""

    def __init__(
        self,
        publish: Publish | None,
        outcomes: Counter | None = None,
        *,
        max_in_flight: int = 10_000,
    ) -> None:
        #: ``None``: ids are still returned, nothing is published (callers log their own).
        self.publish = publish
        self.outcomes = outcomes
        self.max_in_flight = max_in_flight
        self.in_flight: set[asyncio.Task] = set()

    def served(
        self,
        user_id: str,
        items: Sequence[tuple[str, float]],
        *,
        strategy: str,
        model_version: int | None,
        surface: str | None = None,
        answering: str | None = None,
        impression_id: str | None = None,
        experiment: str | None = None,
        arm: str | None = None,
        teams: Sequence[str] | None = None,
    ) -> str:
        """The new impression's id; its event is on its way to ``impressions``.

        ``answering``: the idempotency key of the request being answered, when there is one
        (a Kafka request's ``source/id``). The id is then derived from it, so an answer
        retried after a failed reply publishes the same impression again, which the
        feedback service keeps once, instead of a second one nobody saw. ``impression_id``:
        one :meth:`mint` gave already (an interleaved list is seeded by it). ``experiment``
        and ``arm``: the A/B arm that served it; ``teams``: per slot, the arm (ranker) of an
        interleaved list that contributed it."""
        impression_id = impression_id or self.mint(answering)
        if self.publish is None:
            return impression_id
        if len(self.in_flight) >= self.max_in_flight:
            self._count("dropped")
            log.warning(
                "impression %s not published: %d still in flight",
                impression_id,
                len(self.in_flight),
            )
            return impression_id
        event = ImpressionEvent.create(
            {
                "impression_id": impression_id,
                "user_id": user_id,
                "items": [
                    {"item_id": item, "position": n, "score": score}
                    | ({"arm": teams[n - 1]} if teams else {})
                    for n, (item, score) in enumerate(items, start=1)
                ],
                "strategy": strategy,
                "model_version": model_version,
                "surface": surface or "default",
                "experiment": experiment,
                "arm": arm,
            },
            source=SOURCE,
        )
        task = asyncio.get_running_loop().create_task(self._send(event))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)
        return impression_id

    @staticmethod
    def mint(answering: str | None = None) -> str:
        """A new impression id, derived from ``answering`` when given (see :meth:`served`)."""
        return uuid.uuid5(uuid.NAMESPACE_URL, answering).hex if answering else uuid.uuid4().hex

    async def _send(self, event: ImpressionEvent) -> None:
        try:
            await self.publish(event)
        except Exception as exc:  # noqa: BLE001 - counted and logged; see the module docstring
            self._count("failed")
            log.warning("impression %s not published: %s", event.data.impression_id, exc)
        else:
            self._count("published")

    def _count(self, outcome: str) -> None:
        if self.outcomes is not None:
            self.outcomes.labels(outcome).inc()

    async def drain(self) -> None:
        """Wait for the impressions still in flight (at shutdown, and in tests)."""
        if self.in_flight:
            await asyncio.gather(*self.in_flight, return_exceptions=True)
