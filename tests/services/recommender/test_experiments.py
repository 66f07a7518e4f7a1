"""Experiments in serving, on in-memory stores: arms by bucket, interleaved lists, and the
requests served outside an experiment."""

import asyncio
from datetime import UTC, datetime, timedelta

from services.recommender.experiments import ListRequest, RunningExperiments
from services.recommender.serving import load_active, recommend_for
from shared.experiments import Arm, Experiment, arm_for
from shared.experiments.interleaving import request_rng, team_draft
from tests.services.recommender.fakes import TASTES, seeded

HALF_LIFE = 30 * 86_400.0
NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)


def experiment(name="home-ab", kind="ab", *arms: Arm, stops_at=None) -> Experiment:
    arms = arms or (Arm("als", "als"), Arm("pop", "popularity"))
    return Experiment(name, kind, "home", arms, NOW - timedelta(hours=1), stops_at)


def running(*experiments: Experiment) -> RunningExperiments:
    def load(*, running_at):
        return [e for e in experiments if e.running(running_at)]

    found = RunningExperiments(load, clock=lambda: NOW)
    asyncio.run(found.refresh())
    return found


def serve(found, user, surface="home", k=3, impression_id="imp-1"):
    interactions, models = seeded()
    loaded = load_active(interactions, models, HALF_LIFE)
    request = ListRequest(user, k)
    return loaded, asyncio.run(found.serve(loaded, interactions, request, surface, impression_id))


def test_each_user_gets_the_list_of_their_arm():
    ab = experiment()
    found = running(ab)
    for user in TASTES:
        loaded, served = serve(found, user)
        arm = arm_for(ab, user)
        assert (served.experiment, served.arm) == ("home-ab", arm.name)
        if arm.strategy == "popularity":
            seen = set(TASTES[user])
            assert served.strategy == "popularity"
            assert served.items == loaded.recommender.popular(k=3, exclude=seen)
        else:
            assert (served.items, served.strategy) == recommend_for(
                loaded, loaded_histories(), user, k=3
            )
    assert {arm_for(ab, u).name for u in TASTES} == {"als", "pop"}  # both arms are exercised


def loaded_histories():
    return seeded()[0]


def test_other_surfaces_stopped_and_unservable_experiments_serve_the_default_list():
    user = next(iter(TASTES))
    stopped = experiment("old", stops_at=NOW - timedelta(minutes=1))
    pinned = experiment("pinned", "ab", Arm("a", "als", 99), Arm("b", "als", 99))
    for found, surface in ((running(experiment()), "article"), (running(stopped), "home")):
        _, served = serve(found, user, surface)
        assert (served.experiment, served.arm) == (None, None)
    # Version 99 is not the one served: outside the experiment, warned about once.
    found = running(pinned)
    _, served = serve(found, user)
    assert served.experiment is None and found.warned == {("pinned", arm_for(pinned, user).name)}


def test_an_interleaved_list_is_a_team_draft_seeded_by_the_impression():
    test = experiment("rank", "interleaving")
    user = next(iter(TASTES))
    loaded, served = serve(running(test), user, k=4, impression_id="imp-7")
    als, _ = recommend_for(loaded, loaded_histories(), user, k=4)
    seen = set(TASTES[user])
    pop = loaded.recommender.popular(k=4, exclude=seen)
    expected = team_draft([i for i, _ in als], [i for i, _ in pop], 4, request_rng("rank", "imp-7"))
    assert [item for item, _ in served.items] == expected.items
    assert served.teams == [("als", "pop")[team] for team in expected.teams]
    assert (served.strategy, served.experiment, served.arm) == ("interleaved", "rank", None)
    # Each slot keeps the score its ranker gave it.
    scores = {"als": dict(als), "pop": dict(pop)}
    assert all(
        score == scores[team][item]
        for (item, score), team in zip(served.items, served.teams, strict=True)
    )
    # The same impression id interleaves the same way in any worker.
    assert serve(running(test), user, k=4, impression_id="imp-7")[1] == served


def test_a_failed_refresh_keeps_the_last_experiments():
    from sqlalchemy.exc import OperationalError

    found = running(experiment())
    assert found.on("home") is not None

    def broken(*, running_at):
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    found.load = broken
    asyncio.run(found.refresh())
    assert found.on("home").name == "home-ab"
