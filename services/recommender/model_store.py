"""Postgres adapter for model versions and their factors (bulk COPY, atomic activation)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import psycopg2.extensions
from sqlalchemy import Engine, text

from shared.errors import MarqueeError

from .interactions import Interactions, binary_copy_factors, parse_binary_copy

#: 2000-01-01T00:00:00Z in Unix seconds: where binary timestamps count from.
POSTGRES_EPOCH = 946_684_800.0
#: pg_try_advisory_lock key for "one trainer at a time" across every worker.
TRAINING_LOCK = 0x6D71_7472_6169_6E


class TrainingBusy(MarqueeError):
    """Another worker holds the training lock; this retrain is skipped, not queued."""


@dataclass(frozen=True)
class Version:
    id: int
    status: str
    trained_at: str
    params: dict
    metrics: dict
    n_users: int | None
    n_items: int | None
    n_interactions: int | None
    fit_seconds: float | None


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

    def events(self) -> tuple[Interactions, datetime]:
        """Every stored interaction, column-wise, and the database time just before they
        were read: anything ingested after it is not in them (see :func:`ingested_since`)."""
        with self.engine.connect() as conn:
            read_at = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
            buffer = io.BytesIO()
            with conn.connection.dbapi_connection.cursor() as cur:
                # Dense indices into the persisted id maps, stored with each interaction:
                # fixed-width rows. Times as binary timestamptz, microseconds since
                # 2000-01-01 UTC: converting them to epoch seconds in SQL would cost more
                # than the whole read.
                cur.copy_expert(
                    "COPY (SELECT user_idx, item_idx, weight, occurred_at FROM interactions)"
                    " TO STDOUT (FORMAT binary)",
                    buffer,
                )
            user_idx, item_idx, weights, micros = parse_binary_copy(
                buffer.getvalue(), [">i4", ">i4", ">f4", ">i8"]
            )
            user_rows, users = _compact(user_idx)
            item_rows, items = _compact(item_idx)
            interactions = Interactions(
                user_ids=_external_ids(conn, "users", "user_id", user_rows),
                item_ids=_external_ids(conn, "items", "item_id", item_rows),
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
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    f"SELECT external_id, factors FROM {table} WHERE model_version = :v ORDER BY idx"
                ),
                {"v": version},
            ).all()
        ids = [r[0] for r in rows]
        return ids, np.asarray([r[1] for r in rows], dtype=np.float32)


#: Fold-in rows for ids the version was not trained on get an ``idx`` above every trained
#: row, derived from the id's dense index in ``users``/``items``: every worker computes the
#: same one, so concurrent upserts never collide.
FOLD_IN_IDX_BASE = 1_000_000_000


@dataclass(frozen=True)
class FactorUpdate:
    side: str  # "user" or "item"
    external_id: str
    factors: np.ndarray
    updated_at: datetime


def upsert_factors(
    engine: Engine, version: int, side: str, rows: list[tuple[str, np.ndarray]]
) -> None:
    """Write fold-in factors into ``<side>_factors`` of ``version``, replacing older ones."""
    if not rows:
        return
    table, ids = _SIDES[side]
    with engine.begin() as conn:
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


def factor_updates(
    engine: Engine, version: int, since: datetime
) -> tuple[list[FactorUpdate], datetime]:
    """Fold-ins of ``version`` (by any worker) written at or after ``since``, and the
    database time the read began. The version's trained rows are never among them: they
    carry its ``trained_at`` (one transaction wrote both), and fold-ins come later."""
    found = []
    with engine.connect() as conn:
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
            found += [FactorUpdate(side, e, np.asarray(f, dtype=np.float32), t) for e, f, t in rows]
    return found, read_at


def item_kinds(engine: Engine, item_ids: list[str]) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT item_id, kind FROM items WHERE item_id = ANY(:ids)"), {"ids": item_ids}
        )
        return dict(rows.all())


def ingested_since(engine: Engine, since: datetime) -> tuple[set[str], set[str], datetime]:
    """Users and items of the interactions stored after ``since``, and the database time
    just before they were read."""
    with engine.connect() as conn:
        read_at = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
        rows = conn.execute(
            text("SELECT DISTINCT user_id, item_id FROM interactions WHERE ingested_at >= :t"),
            {"t": since},
        ).all()
    return {u for u, _ in rows}, {i for _, i in rows}, read_at


_SIDES = {"user": ("user_factors", "user"), "item": ("item_factors", "item")}


def histories(engine: Engine, user_ids: list[str]) -> dict[str, list[tuple[str, float]]]:
    """Each user's full history as ``(item_id, confidence)`` pairs (fold-in needs it all)."""
    return _pairs(engine, "user_id", "item_id", user_ids)


def item_histories(engine: Engine, item_ids: list[str]) -> dict[str, list[tuple[str, float]]]:
    """Each item's users as ``(user_id, confidence)`` pairs (``partial_fit_items`` input)."""
    return _pairs(engine, "item_id", "user_id", item_ids)


def _pairs(engine: Engine, key: str, other: str, ids: list[str]) -> dict:
    found: dict[str, list[tuple[str, float]]] = {i: [] for i in ids}
    if not ids:
        return found
    with engine.connect() as conn:
        rows = conn.execute(
            # key and other are column names from this module, never user input.
            text(f"SELECT {key}, {other}, confidence FROM user_item WHERE {key} = ANY(:ids)"),
            {"ids": list(ids)},
        )
        for one, two, confidence in rows:
            found[one].append((two, float(confidence)))
    return found


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
