"""InteractionStore against real Postgres: ids of any shape survive, duplicates count once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from services.recommender.store import InteractionRow, InteractionStore

T0 = datetime(2024, 1, 1, tzinfo=UTC)
AWKWARD = ('quote"d', "back\\slash", "com,ma", "{brace}", "NULL", "sp ace", "é")


def row(n: int, user: str, item: str, weight: float, event_id: str | None = None, **extra):
    return InteractionRow(
        **{
            "event_source": 'urn:"src"\\x',
            "event_id": event_id or f"ev-{n}",
            "user_id": user,
            "item_id": item,
            "action": "click",
            "weight": weight,
            "dwell_seconds": None,
            "rating": None,
            "occurred_at": T0 + timedelta(seconds=n),
            "kafka_topic": "t",
            "kafka_partition": n % 3,
            "kafka_offset": n,
            **extra,
        }
    )


def test_awkward_ids_round_trip_and_each_event_counts_once(engine):
    store = InteractionStore(engine)
    rows = [row(n, user, AWKWARD[-1 - n], 2.0) for n, user in enumerate(AWKWARD)]
    rows += [
        row(10, "u", "i", 1.0, rating=3.5, dwell_seconds=12.5, action="dwell"),
        row(11, "u", "i", 0.25),  # same pair, same batch: both add up
        row(11, "u", "i", 0.25),  # the same event twice in one batch: counted once
    ]
    assert store.write(rows) == len(AWKWARD) + 2
    assert store.write(rows[-3:] + [row(12, "u", "i", 4.0)]) == 1  # a redelivery plus one new

    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT event_source, event_id, user_id, item_id FROM interactions")
        ).all()
        pairs = {
            (u, i): (confidence, events, last_at)
            for u, i, confidence, events, last_at in conn.execute(
                text("SELECT user_id, item_id, confidence, events, last_at FROM user_item")
            )
        }
        users = {r[0] for r in conn.execute(text("SELECT user_id FROM users"))}
        items = {r[0] for r in conn.execute(text("SELECT item_id FROM items"))}
        dwell = conn.execute(
            text("SELECT action, dwell_seconds, rating FROM interactions WHERE event_id = 'ev-10'")
        ).one()
    assert len(stored) == len(AWKWARD) + 3
    assert {(u, i) for _, _, u, i in stored} >= {
        (u, AWKWARD[-1 - n]) for n, u in enumerate(AWKWARD)
    }
    assert all(source == 'urn:"src"\\x' for source, *_ in stored)
    assert pairs[("u", "i")] == (5.25, 3, T0 + timedelta(seconds=12))
    assert pairs[(AWKWARD[0], AWKWARD[-1])] == (2.0, 1, T0)
    assert users == {*AWKWARD, "u"} and items == {*AWKWARD, "i"}
    assert tuple(dwell) == ("dwell", 12.5, 3.5)


def test_an_empty_batch_writes_nothing(engine):
    assert InteractionStore(engine).write([]) == 0


def test_interactions_carry_dense_indices_and_known_ids_take_no_new_ones(engine):
    store = InteractionStore(engine)
    batch = [row(n, f"u{n % 3}", f"i{n % 4}", 1.0) for n in range(12)]
    store.write(batch)
    store.write(batch)  # a redelivery
    store.write([row(100 + n, f"u{n % 3}", f"i{n % 2}", 1.0) for n in range(6)])  # known ids

    with engine.connect() as conn:
        mismatched = conn.execute(
            text(
                "SELECT count(*) FROM interactions x JOIN users u USING (user_id)"
                " JOIN items i USING (item_id) WHERE x.user_idx <> u.idx OR x.item_idx <> i.idx"
            )
        ).scalar_one()
        user_idx = sorted(r[0] for r in conn.execute(text("SELECT idx FROM users")))
        item_idx = sorted(r[0] for r in conn.execute(text("SELECT idx FROM items")))
    assert mismatched == 0
    # Registering ids already known takes nothing from the sequences: no gaps.
    assert user_idx == [0, 1, 2] and item_idx == [0, 1, 2, 3]
