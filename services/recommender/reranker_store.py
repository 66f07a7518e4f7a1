"""Postgres adapter for re-ranker checkpoints (``reranker_versions``, migration 0012).

:meth:`RerankerStore.save` is the activation gate: a re-ranker whose re-ranked lists score
no better offline than ALS's own order is stored as ``rejected`` and never served; one that
beats it becomes the active version and the previous one retires, in one transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import Engine, text

from .features import CATEGORICAL, NUMERIC
from .reranker import MODEL_FORMAT, Reranker


@dataclass(frozen=True, slots=True)
class RerankerVersion:
    version: int
    status: str
    trained_at: str
    ndcg: float
    baseline_ndcg: float
    features: tuple[str, ...]
    metrics: dict


_COLUMNS = "version, status, trained_at, ndcg, baseline_ndcg, features, metrics"


def _row(r) -> RerankerVersion:
    return RerankerVersion(r[0], r[1], r[2].isoformat(), r[3], r[4], tuple(r[5]), r[6])


def checkpoint_evaluation(store: RerankerStore, result: dict, k: int = 10) -> RerankerVersion:
    """Checkpoint the re-ranker an offline evaluation (``reranker_offline.evaluate_reranker``)
    trained, through the gate, with the evaluation's figures."""
    ndcg = result[f"ndcg@{k}"]
    metrics = {
        name: result[name]
        for name in ("impressions", "clicks", "test_users", "seconds", "protocol")
    }
    return store.save(
        result["reranker"], ndcg=ndcg["reranked"], baseline_ndcg=ndcg["als"], metrics=metrics
    )


class RerankerStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def save(
        self, reranker: Reranker, *, ndcg: float, baseline_ndcg: float, metrics: dict | None = None
    ) -> RerankerVersion:
        """Checkpoint ``reranker`` with its offline NDCG and ALS order's on the same split;
        active only if it beats ALS order (strictly), rejected otherwise."""
        status = "active" if ndcg > baseline_ndcg else "rejected"
        with self.engine.begin() as conn:
            if status == "active":
                conn.execute(
                    text("UPDATE reranker_versions SET status = 'retired' WHERE status = 'active'")
                )
            row = conn.execute(
                text(
                    "INSERT INTO reranker_versions"
                    " (status, model, model_format, features, ndcg, baseline_ndcg, metrics)"
                    " VALUES (:status, :model, :format, :features, :ndcg, :baseline,"
                    f" CAST(:metrics AS jsonb)) RETURNING {_COLUMNS}"
                ),
                {
                    "status": status,
                    "model": reranker.to_bytes(),
                    "format": MODEL_FORMAT,
                    "features": list(NUMERIC + CATEGORICAL),
                    "ndcg": float(ndcg),
                    "baseline": float(baseline_ndcg),
                    "metrics": json.dumps(metrics or {}),
                },
            ).one()
        return _row(row)

    def versions(self) -> list[RerankerVersion]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(f"SELECT {_COLUMNS} FROM reranker_versions ORDER BY version DESC")
            ).all()
        return [_row(r) for r in rows]

    def load(self, version: int) -> Reranker:
        with self.engine.connect() as conn:
            row = conn.execute(
                text("SELECT model, model_format FROM reranker_versions WHERE version = :v"),
                {"v": version},
            ).one_or_none()
        if row is None:
            raise LookupError(f"no re-ranker version {version}")
        return Reranker.from_bytes(bytes(row[0]), row[1])

    def active(self) -> tuple[RerankerVersion, Reranker] | None:
        """The active version and its re-ranker, or ``None`` (serve ALS order then)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    f"SELECT {_COLUMNS}, model, model_format FROM reranker_versions"
                    " WHERE status = 'active'"
                )
            ).one_or_none()
        if row is None:
            return None
        return _row(row), Reranker.from_bytes(bytes(row[7]), row[8])
