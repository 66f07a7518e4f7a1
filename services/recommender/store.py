"""Postgres adapter for interactions: idempotent, batched, one transaction per batch.

It implements :class:`~.persistence.HistoryStore`: the writes, and the reads the model
makes of them (histories, what was ingested since, popularity).

A batch travels as one array literal per column and is stored by set-based SQL: one
statement registers the users and another the items they name; a third inserts the
interactions (an event id already stored is skipped) and sums only the new ones into the
user x item confidence. Why not a multi-row INSERT built by
SQLAlchemy: compiling it cost more CPU than everything else in the worker together
(profiled at ~800 events/s end to end). Array literals rather than lists: psycopg2
adapts a list element by element, twice the client CPU of one string per column.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from operator import attrgetter

import numpy as np
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from shared.errors import TransientError

from .model_store import copy_coded
from .persistence import Confidences, InteractionRow, Pair

#: Every InteractionRow field and its Postgres type.
_TYPES = {
    "event_source": "text",
    "event_id": "text",
    "user_id": "text",
    "item_id": "text",
    "action": "text",
    "weight": "real",
    "dwell_seconds": "real",
    "rating": "real",
    "occurred_at": "timestamptz",
    "kafka_topic": "text",
    "kafka_partition": "integer",
    "kafka_offset": "bigint",
}
_COLUMNS = tuple(_TYPES)
_values = attrgetter(*_COLUMNS)


def _quoted(value: str) -> str:
    # Inside a double-quoted array element only the quote and the backslash are special.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _literal(kind: str, values: tuple) -> str:
    """A Postgres array literal (``{"a","b"}``) for one column."""
    if kind == "text":
        items = map(_quoted, values)
    elif kind == "timestamptz":
        items = (f'"{v.isoformat()}"' for v in values)
    else:  # numbers: repr round-trips a float exactly; None is SQL NULL
        items = ("NULL" if v is None else repr(v) for v in values)
    return "{" + ",".join(items) + "}"


# Users and items are registered first, only those not yet known (an INSERT that hits
# ON CONFLICT still takes an index number from the sequence), so each interaction stores
# their dense indices: a retrain then reads them without joining text ids.
# Everything is inserted or upserted in key order: concurrent workers lock rows in one
# order and cannot deadlock. Weights are summed in double precision and rounded once on
# the way into the real column.
_REGISTER = {
    table: f"""
    INSERT INTO {table} ({column})
    SELECT DISTINCT id FROM unnest(%(ids)s::text[]) AS id
    WHERE NOT EXISTS (SELECT FROM {table} WHERE {column} = id)
    ORDER BY 1 ON CONFLICT DO NOTHING
    """
    for table, column in (("users", "user_id"), ("items", "item_id"))
}
# LEFT JOINs: an id somehow not registered fails the NOT NULL index columns, loudly,
# where an inner join would drop its event.
_STORE = f"""
WITH batch AS (
    SELECT * FROM unnest({", ".join(f"CAST(%({c})s AS {t}[])" for c, t in _TYPES.items())})
        AS b({", ".join(_COLUMNS)})
), new AS (
    INSERT INTO interactions ({", ".join(_COLUMNS)}, user_idx, item_idx)
    SELECT b.*, u.idx, i.idx FROM batch b
    LEFT JOIN users u ON u.user_id = b.user_id
    LEFT JOIN items i ON i.item_id = b.item_id
    ON CONFLICT (event_source, event_id) DO NOTHING
    RETURNING user_id, item_id, weight, occurred_at
), pairs AS (
    INSERT INTO user_item AS ui (user_id, item_id, confidence, events, last_at)
    SELECT user_id, item_id, sum(weight::float8), count(*), max(occurred_at)
    FROM new GROUP BY user_id, item_id ORDER BY user_id, item_id
    ON CONFLICT (user_id, item_id) DO UPDATE SET
        confidence = ui.confidence + excluded.confidence,
        events = ui.events + excluded.events,
        last_at = greatest(ui.last_at, excluded.last_at)
)
SELECT count(*) FROM new
"""


class InteractionStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

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
                return _store(conn, rows)
        except DBAPIError as exc:
            if exc.connection_invalidated or _is_connection_error(exc):
                raise TransientError(f"database unavailable: {exc.orig}") from exc
            raise

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in ("interactions", "user_item")
            }

    def histories(self, user_ids: Sequence[str]) -> dict[str, list[Pair]]:
        """Each user's full history as ``(item_id, confidence)`` pairs (fold-in needs it all)."""
        return self._pairs("user_id", "item_id", user_ids)

    def item_histories(self, item_ids: Sequence[str]) -> dict[str, list[Pair]]:
        """Each item's users as ``(user_id, confidence)`` pairs (``partial_fit_items`` input)."""
        return self._pairs("item_id", "user_id", item_ids)

    def _pairs(self, key: str, other: str, ids: Sequence[str]) -> dict[str, list[Pair]]:
        found: dict[str, list[Pair]] = {i: [] for i in ids}
        if not ids:
            return found
        with self.engine.connect() as conn:
            rows = conn.execute(
                # key and other are column names from this module, never user input.
                text(f"SELECT {key}, {other}, confidence FROM user_item WHERE {key} = ANY(:ids)"),
                {"ids": list(ids)},
            )
            for one, two, confidence in rows:
                found[one].append((two, float(confidence)))
        return found

    def item_kinds(self, item_ids: Sequence[str]) -> dict[str, str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT item_id, kind FROM items WHERE item_id = ANY(:ids)"),
                {"ids": list(item_ids)},
            )
            return dict(rows.all())

    def ingested_since(self, since: datetime) -> tuple[set[str], set[str], datetime]:
        """Users and items of the interactions stored after ``since``, and the database time
        just before they were read."""
        with self.engine.connect() as conn:
            read_at = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
            rows = conn.execute(
                text("SELECT DISTINCT user_id, item_id FROM interactions WHERE ingested_at >= :t"),
                {"t": since},
            ).all()
        return {u for u, _ in rows}, {i for _, i in rows}, read_at

    def confidences(self) -> Confidences:
        """Every user x item confidence (the whole table, at load time), by binary COPY."""
        with self.engine.connect() as conn:
            user_ids, item_ids, users, items, (values,) = copy_coded(
                conn,
                "SELECT u.idx, i.idx, ui.confidence FROM user_item AS ui"
                " JOIN users AS u USING (user_id) JOIN items AS i USING (item_id)",
                [">f4"],
            )
        return Confidences(user_ids, item_ids, users, items, values.astype(np.float32))

    def popularity(self, half_life_seconds: float) -> list[Pair]:
        """Time-decayed popularity per item, anchored at the newest event (see
        :func:`~.model.decayed_popularity`), summed in Postgres so only one row per item
        travels."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    # 0.5 ** (age / half_life), floored where float8 would underflow (an error).
                    "SELECT item_id, sum(weight * exp(greatest(-700.0, -ln(2.0) * CAST(extract("
                    "epoch FROM (SELECT max(occurred_at) FROM interactions) - occurred_at)"
                    " AS float8) / :half_life)))"
                    " FROM interactions GROUP BY item_id"
                ),
                {"half_life": half_life_seconds},
            )
            return [(item, float(score)) for item, score in rows]

    def popular_within(self, window_seconds: float, k: int, kind: str | None = None) -> list[Pair]:
        """The k items with the most interaction weight in the last ``window_seconds`` before
        the newest event (a replay of old data has a "last hour" too), best first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT i.item_id, sum(i.weight) AS score FROM interactions i"
                    " JOIN items USING (item_id)"
                    " WHERE i.occurred_at >= (SELECT max(occurred_at) FROM interactions)"
                    "   - make_interval(secs => :window)"
                    " AND (CAST(:kind AS text) IS NULL OR items.kind = :kind)"
                    " GROUP BY i.item_id ORDER BY score DESC, i.item_id LIMIT :k"
                ),
                {"window": window_seconds, "k": k, "kind": kind},
            )
            return [(item, float(score)) for item, score in rows]


def _store(conn: Connection, rows: list[InteractionRow]) -> int:
    columns = zip(_COLUMNS, zip(*map(_values, rows), strict=True), strict=True)
    arrays = {name: _literal(_TYPES[name], values) for name, values in columns}
    conn.exec_driver_sql(_REGISTER["users"], {"ids": arrays["user_id"]})
    conn.exec_driver_sql(_REGISTER["items"], {"ids": arrays["item_id"]})
    return conn.exec_driver_sql(_STORE, arrays).scalar_one()


def _is_connection_error(exc: DBAPIError) -> bool:
    from psycopg2 import InterfaceError, OperationalError

    return isinstance(exc.orig, OperationalError | InterfaceError)
