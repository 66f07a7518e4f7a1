"""What a digest or a grounded answer is written from: catalog items, found for it.

A digest's items are the recommender's for its reader (asked over Kafka, see
:mod:`.recommendations`), best first, with their titles and summaries from the catalog
table; a grounded answer's are the catalog items most relevant to the question
(:mod:`.retrieval`). The retrieval index is rebuilt when the catalog changed since it was
built. Collaborators come in, so the policy runs in unit tests without Kafka or Postgres.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.events.models import ContentRequest, Recommendations

from .errors import RecommenderUnavailable
from .retrieval import CatalogEntry, Encode, Retriever

log = logging.getLogger(__name__)


class Recommender(Protocol):
    async def top_items(self, user_id: str, k: int, timeout: float) -> Recommendations: ...


class Catalog(Protocol):
    def items(self, item_ids: Sequence[str]) -> dict[str, CatalogEntry]: ...

    def version(self) -> tuple[int, object]: ...

    def searchable(self) -> list[CatalogEntry]: ...


@dataclass(frozen=True)
class Grounding:
    items: list[CatalogEntry]
    #: The recommendation list's impression (a digest's, when the reply carries one).
    impression_id: str | None = None
    #: How long the recommender took to answer (a digest's).
    recommender_seconds: float | None = None


def needs_grounding(request: ContentRequest) -> bool:
    return request.kind == "digest" or (request.kind == "assistant" and request.grounded)


class Grounder:
    def __init__(
        self,
        catalog: Catalog,
        recommender: Recommender | None,
        *,
        encoder: Callable[[], Encode | None] = lambda: None,
        digest_items: int = 5,
        answer_items: int = 5,
        recommender_timeout: float = 5.0,
    ) -> None:
        self.catalog = catalog
        self.recommender = recommender
        self.encoder = encoder
        self.digest_items = digest_items
        self.answer_items = answer_items
        self.recommender_timeout = recommender_timeout
        self._index: tuple[tuple[int, object], Retriever] | None = None
        self._encode: Encode | None = None
        self._encoder_tried = False
        self._lock = asyncio.Lock()

    async def ground(self, request: ContentRequest) -> Grounding:
        if request.kind == "digest":
            return await self.digest(request.user_id, request.max_items or self.digest_items)
        return Grounding(await self.retrieve(request.prompt, self.answer_items))

    async def digest(self, user_id: str, k: int) -> Grounding:
        """The reader's recommended items that the catalog describes, best first."""
        if self.recommender is None:
            raise RecommenderUnavailable("this generator has no connection to the recommender")
        started = time.monotonic()
        reply = await self.recommender.top_items(user_id, k, self.recommender_timeout)
        took = time.monotonic() - started
        ids = [item.item_id for item in reply.items]
        known = await asyncio.to_thread(self.catalog.items, ids)
        items = [known[i] for i in ids if i in known]
        if not items:
            why = reply.error or (
                "none of them is in the catalog" if ids else "it recommended nothing"
            )
            raise RecommenderUnavailable(f"the recommender has no items for {user_id}: {why}")
        return Grounding(items, getattr(reply, "impression_id", None), took)

    async def retrieve(self, question: str, k: int, mode: str = "hybrid") -> list[CatalogEntry]:
        retriever = await self.retriever()
        return await asyncio.to_thread(retriever.search, question, k, mode)

    async def retriever(self) -> Retriever:
        """The index over the catalog as it is now (rebuilt when it changed)."""
        async with self._lock:
            version = await asyncio.to_thread(self.catalog.version)
            if self._index is None or self._index[0] != version:
                if not self._encoder_tried:
                    self._encoder_tried = True
                    self._encode = await asyncio.to_thread(self.encoder)
                entries = await asyncio.to_thread(self.catalog.searchable)
                retriever = await asyncio.to_thread(Retriever, entries, self._encode)
                self._index = (version, retriever)
                log.info("catalog index built: %s items", len(entries))
            return self._index[1]
