"""Postgres adapter for interactions: idempotent, batched, one transaction per batch."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import Engine, MetaData, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError

from shared.errors import TransientError


@dataclass(frozen=True, slots=True)
class InteractionRow:
    event_source: str
    event_id: str
    user_id: str
    item_id: str
    action: str
    weight: float
    dwell_seconds: float | None
    rating: float | None
    occurred_at: datetime
    kafka_topic: str
    kafka_partition: int
    kafka_offset: int


class InteractionStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        meta = MetaData()
        names = ("interactions", "user_item", "users", "items")
        meta.reflect(engine, only=names)
        self.interactions, self.user_item, self.users, self.items = (meta.tables[n] for n in names)

    def write(self, rows: list[InteractionRow]) -> int:
        """Insert the batch; returns how many events were new.

        An event already stored (same source + id) is skipped, and only new events add
        to the user x item confidence, so a redelivered batch changes nothing.
        Raises :class:`TransientError` when the database cannot be reached.
        """
        if not rows:
            return 0
        try:
            with self.engine.begin() as conn:
                inserted = conn.execute(
                    insert(self.interactions)
                    .values([asdict(row) for row in rows])
                    .on_conflict_do_nothing(index_elements=["event_source", "event_id"])
                    .returning(
                        self.interactions.c.user_id,
                        self.interactions.c.item_id,
                        self.interactions.c.weight,
                        self.interactions.c.occurred_at,
                    )
                ).all()
                if inserted:
                    self._aggregate(conn, inserted)
                return len(inserted)
        except DBAPIError as exc:
            if exc.connection_invalidated or _is_connection_error(exc):
                raise TransientError(f"database unavailable: {exc.orig}") from exc
            raise

    def _aggregate(self, conn, inserted) -> None:
        pairs: dict[tuple[str, str], list] = defaultdict(lambda: [0.0, 0, None])
        for user_id, item_id, weight, occurred_at in inserted:
            agg = pairs[(user_id, item_id)]
            agg[0] += weight
            agg[1] += 1
            agg[2] = occurred_at if agg[2] is None else max(agg[2], occurred_at)
        # Sorted keys: concurrent workers lock rows in one order and cannot deadlock.
        values = [
            {"user_id": u, "item_id": i, "confidence": c, "events": n, "last_at": t}
            for (u, i), (c, n, t) in sorted(pairs.items())
        ]
        stmt = insert(self.user_item).values(values)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["user_id", "item_id"],
                set_={
                    "confidence": self.user_item.c.confidence + stmt.excluded.confidence,
                    "events": self.user_item.c.events + stmt.excluded.events,
                    "last_at": func.greatest(self.user_item.c.last_at, stmt.excluded.last_at),
                },
            )
        )
        for table, column in ((self.users, "user_id"), (self.items, "item_id")):
            ids = sorted({v[column] for v in values})
            conn.execute(insert(table).values([{column: i} for i in ids]).on_conflict_do_nothing())

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                "interactions": conn.execute(
                    select(func.count()).select_from(self.interactions)
                ).scalar_one(),
                "user_item": conn.execute(
                    select(func.count()).select_from(self.user_item)
                ).scalar_one(),
            }


def _is_connection_error(exc: DBAPIError) -> bool:
    from psycopg2 import InterfaceError, OperationalError

    return isinstance(exc.orig, OperationalError | InterfaceError)
