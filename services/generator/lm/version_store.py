"""``lm_versions`` in Postgres: register fine-tuned models, list them, switch the active one."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, text

from ..errors import FinetuneError

COLUMNS = (
    "version, base, model_dir, corpus_fingerprint, hyperparameters, base_validation_perplexity, "
    "base_test_perplexity, validation_perplexity, test_perplexity, status, created_at, activated_at"
)


@dataclass(frozen=True)
class LMVersion:
    version: str
    base: str
    model_dir: str
    corpus_fingerprint: str
    hyperparameters: dict
    base_validation_perplexity: float
    base_test_perplexity: float | None
    validation_perplexity: float
    test_perplexity: float | None
    status: str
    created_at: datetime | None = None
    activated_at: datetime | None = None


class LMVersionStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def register(self, v: LMVersion) -> None:
        """Insert ``v`` (status ``candidate`` or ``rejected``); a known version is an error."""
        row = {
            k: getattr(v, k)
            for k in LMVersion.__dataclass_fields__
            if k not in ("created_at", "activated_at")
        }
        row["hyperparameters"] = json.dumps(v.hyperparameters)
        with self._engine.begin() as conn:
            done = conn.execute(
                text(
                    "INSERT INTO lm_versions (version, base, model_dir, corpus_fingerprint, hyperparameters, "
                    "base_validation_perplexity, base_test_perplexity, validation_perplexity, test_perplexity, status) "
                    "VALUES (:version, :base, :model_dir, :corpus_fingerprint, CAST(:hyperparameters AS jsonb), "
                    ":base_validation_perplexity, :base_test_perplexity, :validation_perplexity, :test_perplexity, "
                    ":status) ON CONFLICT (version) DO NOTHING"
                ),
                row,
            )
            if done.rowcount == 0:
                raise FinetuneError(
                    f"LM version {v.version!r} is already registered: pass another --name"
                )

    def list(self) -> list[LMVersion]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                text(f"SELECT {COLUMNS} FROM lm_versions ORDER BY created_at, version")
            )
            return [LMVersion(*r) for r in rows]

    def get(self, version: str) -> LMVersion | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                text(f"SELECT {COLUMNS} FROM lm_versions WHERE version = :v"), {"v": version}
            ).first()
        return LMVersion(*row) if row else None

    def active(self) -> LMVersion | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                text(f"SELECT {COLUMNS} FROM lm_versions WHERE status = 'active'")
            ).first()
        return LMVersion(*row) if row else None

    def activate(self, version: str, *, force: bool = False) -> LMVersion:
        """Make ``version`` the served one (the previous active one is retired), in one
        transaction. A version that failed the gate needs ``force``."""
        with self._engine.begin() as conn:
            row = conn.execute(
                text("SELECT status FROM lm_versions WHERE version = :v FOR UPDATE"), {"v": version}
            ).first()
            if row is None:
                raise FinetuneError(f"no LM version {version!r}: see `marquee lm versions`")
            if row[0] == "rejected" and not force:
                raise FinetuneError(
                    f"LM version {version!r} failed the quality gate; pass --force to serve it anyway"
                )
            conn.execute(
                text(
                    "UPDATE lm_versions SET status = 'retired' WHERE status = 'active' AND version <> :v"
                ),
                {"v": version},
            )
            conn.execute(
                text(
                    "UPDATE lm_versions SET status = 'active', activated_at = now() WHERE version = :v"
                ),
                {"v": version},
            )
        return self.get(version)  # type: ignore[return-value]
