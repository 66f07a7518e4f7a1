"""Fold-in, catch-up and adoption of other workers' fold-ins, on in-memory stores."""

import asyncio

import numpy as np

from services.recommender import freshness
from services.recommender.serving import load_active
from tests.services.recommender.fakes import TASTES, row, seeded

HALF_LIFE = 30 * 86_400.0


def loaded_from(interactions, models):
    return load_active(interactions, models, HALF_LIFE)


def test_a_batch_folds_its_users_in_from_their_full_history_and_stores_them():
    interactions, models = seeded()
    loaded = loaded_from(interactions, models)
    before = loaded.recommender.factors_of("user", "a1")
    interactions.write([row("a1", "y1"), row("fresh", "y1"), row("fresh", "y2")])
    done = asyncio.run(
        freshness.fold_in(interactions, models, loaded, {"a1", "fresh"}, {"y1", "y2"})
    )
    assert sorted(done.users) == ["a1", "fresh"] and done.items == []
    rec = loaded.recommender
    assert not np.array_equal(rec.factors_of("user", "a1"), before)
    # Stored under the version served, exactly as the model holds them.
    for user in ("a1", "fresh"):
        assert np.array_equal(models.rows[1, "user"][user][0], rec.factors_of("user", user))
    # From the full history, not the batch: a1's older clicks are still theirs.
    assert rec.seen_row(rec.users.get("a1")).nnz == len(TASTES["a1"]) + 1
    assert not {i for i, _ in rec.recommend("a1", k=8)} & {*TASTES["a1"], "y1"}
    assert rec.recommend("fresh", k=1)[0][0] == "y3"


def test_a_new_item_gets_factors_from_the_users_who_touched_it():
    interactions, models = seeded()
    loaded = loaded_from(interactions, models)
    interactions.kinds["article-1"] = "article"
    interactions.write([row(f"b{n}", "article-1", 4.0) for n in range(3)])
    interactions.write([row("nobody-known", "article-2")])
    done = asyncio.run(
        freshness.fold_in(
            interactions, models, loaded, {"b0", "b1", "b2"}, {"article-1", "article-2"}
        )
    )
    assert done.items == ["article-1"]  # article-2's only reader has no factors
    assert "article-1" in models.rows[1, "item"] and "article-2" not in models.rows[1, "item"]
    assert [i for i, _ in loaded.recommender.recommend("b3", k=1, kind="article")] == ["article-1"]


def test_catch_up_folds_in_what_was_stored_after_the_version_read_its_data():
    interactions, models = seeded()
    loaded = loaded_from(interactions, models)
    interactions.write([row("late", "x1"), row("late", "x2")])
    first = asyncio.run(freshness.catch_up(interactions, models, loaded))
    assert first.users == ["late"]
    first_read = loaded.caught_up_to

    interactions.write([row("later", "y1")])
    second = asyncio.run(freshness.catch_up(interactions, models, loaded))
    assert loaded.caught_up_to > first_read
    assert second.users == ["later"]  # from where the first read, not from the start


def test_a_version_that_did_not_record_its_data_has_nothing_to_catch_up():
    interactions, models = seeded()
    loaded = loaded_from(interactions, models)
    del loaded.version.metrics["data_until"]
    interactions.write([row("late", "x1")])
    done = asyncio.run(freshness.catch_up(interactions, models, loaded))
    assert done.users == [] and loaded.caught_up_to is None


def test_every_worker_adopts_the_fold_ins_another_stored_once():
    interactions, models = seeded()
    mine, theirs = loaded_from(interactions, models), loaded_from(interactions, models)
    interactions.kinds["article-1"] = "article"
    interactions.write([row("fresh", "x1"), *(row(f"a{n}", "article-1") for n in range(3))])
    asyncio.run(
        freshness.fold_in(
            interactions, models, theirs, {"fresh", "a0", "a1", "a2"}, {"x1", "article-1"}
        )
    )

    adopted = asyncio.run(freshness.sync(interactions, models, mine))
    assert adopted == 5  # four users and the new item
    for side, external in (("user", "fresh"), ("item", "article-1")):
        assert np.array_equal(
            mine.recommender.factors_of(side, external),
            theirs.recommender.factors_of(side, external),
        )
    # Adopted with the user's history, so seen items stay filtered out.
    assert "x1" not in {i for i, _ in mine.recommender.recommend("fresh", k=8)}
    assert mine.recommender.recommend("fresh", k=3) == theirs.recommender.recommend("fresh", k=3)

    assert asyncio.run(freshness.sync(interactions, models, mine)) == 0  # already adopted
    assert asyncio.run(freshness.sync(interactions, models, theirs)) == 0  # its own
