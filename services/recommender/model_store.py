"""Postgres adapter for model versions and their factors (bulk COPY, atomic activation).

It implements :class:`~.persistence.FactorStore`: the versions, their trained factors and
the fold-ins every worker writes and adopts.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import numpy as np
import psycopg2.extensions
from sqlalchemy import Engine, text

from shared.errors import MarqueeError

from .interactions import Interactions, binary_copy_factors, parse_binary_copy
from .persistence import FactorUpdate, Version

#: 2000-01-01T00:00:00Z in Unix seconds: where binary timestamps count from.
POSTGRES_EPOCH = 946_684_800.0
#: pg_try_advisory_lock key for "one trainer at a time" across every worker.
TRAINING_LOCK = 0x6D71_7472_6169_6E


class TrainingBusy(MarqueeError):
    """Another worker holds the training lock; this retrain is skipped, not queued."""


class ModelStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def training_lock(self) -> Iterator[None]:
        """Hold the cluster-wide training lock, or raise :class:`TrainingBusy` at once."""
        with self.engine.connect() as conn:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": TRAINING_LOCK})
            if not got.scalar_one():
                raise TrainingBusy("another worker is training; try again when it is done")
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": TRAINING_LOCK})
                conn.commit()

    def training_lock_holders(self) -> list[str]:
        """The ``application_name`` of each session holding the training lock now (one at
        most): who is training, without taking the lock."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT a.application_name FROM pg_locks AS l JOIN pg_stat_activity AS a"
                    " USING (pid) WHERE l.locktype = 'advisory' AND l.granted"
                    " AND l.classid = CAST(:hi AS oid) AND l.objid = CAST(:lo AS oid)"
                ),
                {"hi": TRAINING_LOCK >> 32, "lo": TRAINING_LOCK & 0xFFFF_FFFF},
            )
            return [name for (name,) in rows]

    def events(self) -> tuple[Interactions, datetime]:
        """Every stored interaction, column-wise, and the database time just before they
        were read: anything ingested after it is not in them (see ``InteractionStore.ingested_since``)."""
        with self.engine.connect() as conn:
            read_at = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
            # Times as binary timestamptz, microseconds since 2000-01-01 UTC: converting
            # them to epoch seconds in SQL would cost more than the whole read.
            user_ids, item_ids, users, items, (weights, micros) = copy_coded(
                conn,
                "SELECT user_idx, item_idx, weight, occurred_at FROM interactions",
                [">f4", ">i8"],
            )
            interactions = Interactions(
                user_ids=user_ids,
                item_ids=item_ids,
                users=users,
                items=items,
                weights=weights.astype(np.float32),
                times=micros / 1e6 + POSTGRES_EPOCH,
            )
            return interactions, read_at

    def save(
        self,
        *,
        status: str,
        params: dict,
        metrics: dict,
        users: list[str],
        items: list[str],
        user_factors: np.ndarray,
        item_factors: np.ndarray,
        n_interactions: int,
        fit_seconds: float,
    ) -> int:
        """Insert a version and its factors in one transaction; returns its id."""
        with self.engine.begin() as conn:
            version = conn.execute(
                text(
                    "INSERT INTO model_versions"
                    " (status, params, metrics, n_users, n_items, n_interactions, fit_seconds)"
                    " VALUES (:status, CAST(:params AS jsonb), CAST(:metrics AS jsonb),"
                    " :n_users, :n_items, :n_interactions, :fit_seconds) RETURNING id"
                ),
                {
                    "status": status,
                    "params": json.dumps(params),
                    "metrics": json.dumps(metrics),
                    "n_users": len(users),
                    "n_items": len(items),
                    "n_interactions": n_interactions,
                    "fit_seconds": fit_seconds,
                },
            ).scalar_one()
            raw = conn.connection.dbapi_connection
            encoding = psycopg2.extensions.encodings[raw.encoding]
            with raw.cursor() as cur:
                for table, ids, factors in (
                    ("user_factors", users, user_factors),
                    ("item_factors", items, item_factors),
                ):
                    cur.copy_expert(
                        f"COPY {table} (model_version, idx, external_id, factors)"
                        " FROM STDIN (FORMAT binary)",
                        io.BytesIO(binary_copy_factors(version, ids, factors, encoding)),
                    )
            return version

    def activate(self, version: int) -> None:
        """Make ``version`` the active one; the previous one retires in the same transaction."""
        with self.engine.begin() as conn:
            conn.execute(
                text("UPDATE model_versions SET status = 'retired' WHERE status = 'active'")
            )
            conn.execute(
                text("UPDATE model_versions SET status = 'active' WHERE id = :v"), {"v": version}
            )

    def reject(self, version: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                text("UPDATE model_versions SET status = 'rejected' WHERE id = :v"), {"v": version}
            )

    def prune(self, keep: int) -> int:
        """Delete all but the newest ``keep`` versions (never the active one)."""
        with self.engine.begin() as conn:
            return conn.execute(
                text(
                    "DELETE FROM model_versions WHERE status <> 'active' AND id NOT IN"
                    " (SELECT id FROM model_versions ORDER BY id DESC LIMIT :keep)"
                ),
                {"keep": keep},
            ).rowcount

    def versions(self) -> list[Version]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT id, status, trained_at, params, metrics, n_users, n_items,"
                    " n_interactions, fit_seconds FROM model_versions ORDER BY id DESC"
                )
            ).all()
        return [Version(r[0], r[1], r[2].isoformat(), *r[3:]) for r in rows]

    def training_state(self) -> tuple[int, int | None, float | None]:
        """``(interactions stored, interactions the newest version saw, its age in seconds)``;
        the last two are ``None`` before the first version."""
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM interactions), v.n_interactions,"
                    " CAST(extract(epoch FROM now() - v.trained_at) AS float8)"
                    " FROM (SELECT 1) AS one LEFT JOIN LATERAL (SELECT n_interactions, trained_at"
                    " FROM model_versions ORDER BY id DESC LIMIT 1) AS v ON true"
                )
            ).one()
        return int(row[0]), row[1], row[2]

    def active(self) -> Version | None:
        return next((v for v in self.versions() if v.status == "active"), None)

    def factors(self, version: int, side: str) -> tuple[list[str], np.ndarray]:
        """The ids and factor matrix of one side ("user" or "item") of a version."""
        table = {"user": "user_factors", "item": "item_factors"}[side]
        ids, rows = [], []
        with self.engine.connect() as conn:
            # A server-side cursor, FACTOR_ROWS_PER_FETCH rows a fetch: the driver parses each
            # fetch's arrays holding the interpreter, and all of them at once stalled a
            # serving worker's requests for ~100 ms when it loaded a new version.
            result = conn.execution_options(yield_per=FACTOR_ROWS_PER_FETCH).execute(
                text(
                    f"SELECT external_id, factors FROM {table} WHERE model_version = :v ORDER BY idx"
                ),
                {"v": version},
            )
            for external_id, factors in result:
                ids.append(external_id)
                rows.append(factors)
        return ids, np.asarray(rows, dtype=np.float32)

    def now(self) -> datetime:
        """The database's clock, which stamps fold-ins (``updated_at``)."""
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT clock_timestamp()")).scalar_one()

    def upsert_factors(self, version: int, side: str, rows: list[tuple[str, np.ndarray]]) -> None:
        """Write fold-in factors into ``<side>_factors`` of ``version``, replacing older ones."""
        if not rows:
            return
        table, ids = _SIDES[side]
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    f"INSERT INTO {table} (model_version, idx, external_id, factors, updated_at)"
                    f" SELECT :v, :base + ids.idx, ids.{ids}_id, :factors, clock_timestamp()"
                    f" FROM {ids}s AS ids WHERE ids.{ids}_id = :id"
                    " ON CONFLICT (model_version, external_id)"
                    " DO UPDATE SET factors = EXCLUDED.factors, updated_at = EXCLUDED.updated_at"
                ),
                [
                    {"v": version, "base": FOLD_IN_IDX_BASE, "id": external, "factors": v.tolist()}
                    # Sorted: two workers upserting overlapping ids lock rows in one order.
                    for external, v in sorted(rows, key=lambda row: row[0])
                ],
            )

    def factor_updates(self, version: int, since: datetime) -> tuple[list[FactorUpdate], datetime]:
        """Fold-ins of ``version`` (by any worker) written at or after ``since``, and the
        database time the read began. The version's trained rows are never among them: they
        carry its ``trained_at`` (one transaction wrote both), and fold-ins come later."""
        found = []
        with self.engine.connect() as conn:
            read_at = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
            for side, (table, _) in _SIDES.items():
                rows = conn.execute(
                    text(
                        f"SELECT external_id, factors, updated_at FROM {table}"
                        " WHERE model_version = :v AND updated_at >= :since AND updated_at >"
                        " (SELECT trained_at FROM model_versions WHERE id = :v)"
                    ),
                    {"v": version, "since": since},
                )
                found += [
                    FactorUpdate(side, e, np.asarray(f, dtype=np.float32), t) for e, f, t in rows
                ]
        return found, read_at


#: Factor rows read per fetch (see ``ModelStore.factors``): ~5 ms of parsing each.
FACTOR_ROWS_PER_FETCH = 50

#: Fold-in rows for ids the version was not trained on get an ``idx`` above every trained
#: row, derived from the id's dense index in ``users``/``items``: every worker computes the
#: same one, so concurrent upserts never collide.
FOLD_IN_IDX_BASE = 1_000_000_000

_SIDES = {"user": ("user_factors", "user"), "item": ("item_factors", "item")}


def copy_coded(
    conn, select: str, fields: list[str]
) -> tuple[list[str], list[str], np.ndarray, np.ndarray, list[np.ndarray]]:
    """``COPY (select) TO STDOUT (FORMAT binary)`` of rows that start with a user's and an
    item's dense index (``users.idx``, ``items.idx``: fixed-width, unlike their ids) and go
    on with fixed-width ``fields``. Returns the external ids of the users and of the items
    present, each row's user and item as a position among them, and the other columns."""
    buffer = io.BytesIO()
    with conn.connection.dbapi_connection.cursor() as cur:
        cur.copy_expert(f"COPY ({select}) TO STDOUT (FORMAT binary)", buffer)
    user_idx, item_idx, *columns = parse_binary_copy(buffer.getvalue(), [">i4", ">i4", *fields])
    user_rows, users = _compact(user_idx)
    item_rows, items = _compact(item_idx)
    return (
        _external_ids(conn, "users", "user_id", user_rows),
        _external_ids(conn, "items", "item_id", item_rows),
        users,
        items,
        columns,
    )


def _compact(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(the distinct indices, sorted; each index's position among them)``: ``np.unique``
    with ``return_inverse``, without its sort (the indices are small and dense)."""
    present = np.zeros(int(indices.max(initial=-1)) + 1, dtype=bool)
    present[indices] = True
    position = np.cumsum(present) - 1
    return np.flatnonzero(present), position[indices]


def _external_ids(conn, table: str, column: str, indices: np.ndarray) -> list[str]:
    """The external ids of dense ``indices`` of ``users`` or ``items``, in that order."""
    rows = conn.execute(
        # table and column are names from this module, never user input.
        text(f"SELECT idx, {column} FROM {table} WHERE idx = ANY(:indices)"),
        {"indices": indices.tolist()},
    )
    by_index = dict(rows.all())
    return [by_index[i] for i in indices.tolist()]
