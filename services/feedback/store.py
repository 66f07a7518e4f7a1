"""The feedback tables (migrations 0008 and 0013): idempotent writes and the CTR query over them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from sqlalchemy import Engine, TextClause, text

from .ctr import Cell
from .rows import ImpressionRow, InteractionRow


def _batch_insert(table: str, columns: dict[str, str], returning: str) -> TextClause:
    """One statement for a whole batch: arrays of each column, unnested (one round trip
    instead of one per row); rows already there are skipped and not returned."""
    arrays = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in columns.items())
    return text(
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"
        f" ON CONFLICT DO NOTHING RETURNING {returning}"
    )


_IMPRESSION_COLUMNS = {
    "impression_id": "text",
    "user_id": "text",
    "served_at": "timestamptz",
    "strategy": "text",
    "model_version": "int",
    "surface": "text",
    "experiment": "text",
    "arm": "text",
    "slots": "int",
}
_SLOT_COLUMNS = {
    "impression_id": "text",
    "position": "smallint",
    "item_id": "text",
    "score": "float8",
    "arm": "text",
}
_INTERACTION_COLUMNS = {
    "event_source": "text",
    "event_id": "text",
    "impression_id": "text",
    "user_id": "text",
    "item_id": "text",
    "action": "text",
    "dwell_seconds": "float8",
    "occurred_at": "timestamptz",
}
_IMPRESSIONS = _batch_insert("feedback_impressions", _IMPRESSION_COLUMNS, "impression_id")
_SLOTS = _batch_insert("feedback_slots", _SLOT_COLUMNS, "1")
_INTERACTIONS = _batch_insert("feedback_interactions", _INTERACTION_COLUMNS, "1")


def _columns(rows: Sequence[dict], names: dict[str, str]) -> dict[str, list]:
    return {name: [row[name] for row in rows] for name in names}


#: Slots of the lists served in the window, each with what was attributed to it.
_SLOTS_IN_WINDOW = """
WITH shown AS (
    SELECT i.impression_id, i.served_at, i.model_version, i.strategy, i.surface,
           s.position, s.item_id
    FROM feedback_impressions i JOIN feedback_slots s USING (impression_id)
    WHERE i.served_at >= now() - make_interval(secs => :window)
), hits AS (
    SELECT sh.impression_id, sh.position,
           bool_or(f.action = 'click') AS clicked,
           count(*) FILTER (WHERE f.action = 'like') AS likes,
           coalesce(sum(f.dwell_seconds) FILTER (WHERE f.action = 'dwell'), 0) AS dwell
    FROM shown sh JOIN feedback_interactions f
      ON f.impression_id = sh.impression_id AND f.item_id = sh.item_id
     AND f.occurred_at >= sh.served_at - make_interval(secs => :skew)
     AND f.occurred_at <= sh.served_at + make_interval(secs => :attribution)
    GROUP BY sh.impression_id, sh.position
)
SELECT sh.model_version, sh.strategy, sh.surface, {position} AS position,
       count(DISTINCT sh.impression_id) AS lists, count(*) AS shown,
       count(*) FILTER (WHERE h.clicked) AS clicks,
       coalesce(sum(h.likes), 0) AS likes, coalesce(sum(h.dwell), 0) AS dwell
FROM shown sh LEFT JOIN hits h USING (impression_id, position)
GROUP BY sh.model_version, sh.strategy, sh.surface{group_position}
ORDER BY sh.model_version NULLS FIRST, sh.strategy, sh.surface{group_position}
"""
_BY_GROUP = text(_SLOTS_IN_WINDOW.format(position="NULL::int", group_position=""))
_BY_POSITION = text(_SLOTS_IN_WINDOW.format(position="sh.position", group_position=", sh.position"))
#: Clicks in the window that no impression claims: none named, unknown, too late, or an
#: item that list did not show.
_ORGANIC = text(
    """
SELECT count(*) FROM feedback_interactions f
WHERE f.action = 'click' AND f.occurred_at >= now() - make_interval(secs => :window)
  AND NOT EXISTS (
    SELECT 1 FROM feedback_impressions i JOIN feedback_slots s USING (impression_id)
    WHERE i.impression_id = f.impression_id AND s.item_id = f.item_id
      AND f.occurred_at >= i.served_at - make_interval(secs => :skew)
      AND f.occurred_at <= i.served_at + make_interval(secs => :attribution))
"""
)


@dataclass(frozen=True)
class Written:
    impressions: int
    interactions: int


@dataclass(frozen=True)
class Rates:
    by_group: list[Cell]
    by_position: list[Cell]
    organic_clicks: int


class FeedbackStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def write(
        self, impressions: Sequence[ImpressionRow], interactions: Sequence[InteractionRow]
    ) -> Written:
        """Store what is new in one transaction; rows already there are left alone."""
        new_impressions, new_interactions = set(), 0
        with self.engine.begin() as conn:
            if impressions:
                rows = [asdict(row) | {"slots": len(row.slots)} for row in impressions]
                bind = _columns(rows, _IMPRESSION_COLUMNS)
                new_impressions = set(conn.execute(_IMPRESSIONS, bind).scalars())
                slots = [
                    dict(zip(_SLOT_COLUMNS, (row.impression_id, *slot), strict=True))
                    for row in impressions
                    if row.impression_id in new_impressions
                    for slot in row.slots
                ]
                if slots:
                    conn.execute(_SLOTS, _columns(slots, _SLOT_COLUMNS))
            if interactions:
                bind = _columns([asdict(row) for row in interactions], _INTERACTION_COLUMNS)
                new_interactions = len(conn.execute(_INTERACTIONS, bind).all())
        return Written(len(new_impressions), new_interactions)

    def rates(self, window: float, attribution: float, skew: float) -> Rates:
        """Impressions, clicks and their attribution for the lists served ``window`` seconds
        back, attributed within ``attribution`` seconds of serving."""
        bind = {"window": window, "attribution": attribution, "skew": skew}
        with self.engine.connect() as conn:
            cells = [
                [
                    Cell(
                        model_version=r.model_version,
                        strategy=r.strategy,
                        surface=r.surface,
                        position=r.position,
                        lists=r.lists,
                        shown=r.shown,
                        clicks=r.clicks,
                        likes=int(r.likes),
                        dwell_seconds=float(r.dwell),
                    )
                    for r in conn.execute(query, bind)
                ]
                for query in (_BY_GROUP, _BY_POSITION)
            ]
            organic = conn.execute(_ORGANIC, bind).scalar_one()
        return Rates(by_group=cells[0], by_position=cells[1], organic_clicks=organic)
