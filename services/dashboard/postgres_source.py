"""Postgres adapter: the read-only queries behind the Recommender and Generator panels.

Every value is a bound parameter; long texts are cut in SQL so a huge article never
travels to the dashboard whole.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, text

#: Characters of a prompt / generated text sent to the page.
PROMPT_CHARS = 400
TEXT_CHARS = 1_500


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class PostgresSource:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def versions(self, limit: int = 20) -> list[dict[str, Any]]:
        # Not the recommender's ModelStore.versions(): importing that module brings implicit
        # and scipy into this process, and the page needs neither params nor every version.
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT id, status, trained_at, metrics, n_users, n_items, n_interactions,"
                    " fit_seconds FROM model_versions ORDER BY id DESC LIMIT :n"
                ),
                {"n": limit},
            ).all()
        return [
            {
                "id": r[0],
                "status": r[1],
                "trained_at": _iso(r[2]),
                "metrics": r[3] or {},
                "n_users": r[4],
                "n_items": r[5],
                "n_interactions": r[6],
                "fit_seconds": r[7],
            }
            for r in rows
        ]

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM items),"
                    " (SELECT count(*) FROM interactions)"
                )
            ).one()
        return {"users": row[0], "items": row[1], "interactions": row[2]}

    def generated(self, latest: int = 8, stats_rows: int = 500) -> dict[str, Any]:
        """The newest pieces, the raw numbers for timing percentiles, and status counts."""
        with self.engine.connect() as conn:
            pieces = conn.execute(
                text(
                    "SELECT request_id, kind, left(prompt, :pc), status, left(text, :tc), error,"
                    " model, prompt_tokens, completion_tokens, finish_reason, timings, item_id,"
                    " created_at FROM generated_content ORDER BY created_at DESC LIMIT :n"
                ),
                {"pc": PROMPT_CHARS, "tc": TEXT_CHARS, "n": latest},
            ).all()
            recent = conn.execute(
                text(
                    "SELECT completion_tokens, timings FROM generated_content WHERE status = 'ok'"
                    " ORDER BY created_at DESC LIMIT :n"
                ),
                {"n": stats_rows},
            ).all()
            totals = conn.execute(
                text(
                    "SELECT status, count(*), count(*) FILTER (WHERE created_at > now() -"
                    " interval '1 hour') FROM generated_content GROUP BY status"
                )
            ).all()
        return {
            "latest": [
                {
                    "request_id": r[0],
                    "kind": r[1],
                    "prompt": r[2],
                    "status": r[3],
                    "text": r[4],
                    "error": r[5],
                    "model": r[6],
                    "prompt_tokens": r[7],
                    "completion_tokens": r[8],
                    "finish_reason": r[9],
                    "timings": r[10] or {},
                    "item_id": r[11],
                    "created_at": _iso(r[12]),
                }
                for r in pieces
            ],
            "recent": [(r[0], r[1] or {}) for r in recent],
            "totals": {r[0]: {"all": r[1], "last_hour": r[2]} for r in totals},
        }

    def history(self, user_id: str, limit: int = 20) -> dict[str, Any]:
        """A user's newest interactions, with item titles where the catalog has them."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT i.item_id, i.action, i.rating, i.dwell_seconds, i.occurred_at,"
                    " it.title, it.kind FROM interactions i LEFT JOIN items it USING (item_id)"
                    " WHERE i.user_id = :u ORDER BY i.occurred_at DESC LIMIT :n"
                ),
                {"u": user_id, "n": limit},
            ).all()
            total = conn.execute(
                text("SELECT count(*) FROM interactions WHERE user_id = :u"), {"u": user_id}
            ).scalar_one()
        return {
            "total": total,
            "events": [
                {
                    "item_id": r[0],
                    "action": r[1],
                    "rating": r[2],
                    "dwell_seconds": r[3],
                    "occurred_at": _iso(r[4]),
                    "title": r[5],
                    "kind": r[6],
                }
                for r in rows
            ],
        }
