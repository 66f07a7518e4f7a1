import json

import numpy as np
import pytest

from services.recommender.item_cold_start import (
    evaluate_item_cold_start,
    movielens_texts,
    split_items,
    tfidf,
)
from services.recommender.model import AlsParams
from shared.data.movielens import Film, Rating

PARAMS = AlsParams(factors=8, regularization=1.0, iterations=8, random_state=0)
TOPICS, ITEMS, USERS = 8, 400, 160


def clustered():
    """Items about one of four topics; each user reads mostly one topic."""
    rng = np.random.default_rng(7)
    topic = np.arange(ITEMS) % TOPICS
    ratings = []
    for user in range(USERS):
        mine = np.flatnonzero(topic == user % TOPICS)
        others = np.flatnonzero(topic != user % TOPICS)
        read = np.concatenate([rng.choice(mine, 20, replace=False), rng.choice(others, 3)])
        for t, item in enumerate(read):
            ratings.append(Rating(str(user), str(item), 5.0, 1_000 + t))
    return ratings, topic


def test_split_holds_out_every_event_of_a_fifth_of_the_items():
    events = [(str(u), str(i), 1.0, 0) for u in range(5) for i in range(50)]
    train, test, held = split_items(events, seed=3)
    assert len(held) == 10
    assert {e[1] for e in test} == held and not {e[1] for e in train} & held
    assert split_items(events, seed=3)[2] == held != split_items(events, seed=4)[2]


def test_content_that_knows_the_topic_ranks_unread_items_far_above_random():
    ratings, topic = clustered()
    ids = [str(i) for i in range(ITEMS)]
    rng = np.random.default_rng(0)
    informed = np.eye(TOPICS)[topic] + 0.05 * rng.normal(size=(ITEMS, TOPICS))
    noise = rng.normal(size=(ITEMS, TOPICS))
    result = evaluate_item_cold_start(
        ratings, ids, {"informed": informed, "noise": noise}, PARAMS, num_threads=1
    )
    json.dumps(result)
    ndcg = {name: m["ndcg@10"]["mean"] for name, m in result["models"].items()}
    assert set(ndcg) == {"informed", "noise", "random", "content_popularity"}
    assert result["default"] == "informed" and result["held_out_items"] == ITEMS // 5
    # A user reads ~2 in 5 of the held-out items of their topic: ranking that topic first
    # (in any order) is about the best there is, ~0.6 here.
    assert ndcg["informed"] > 0.45 and ndcg["informed"] > 5 * ndcg["random"]
    assert ndcg["noise"] < 2 * ndcg["random"]
    paired = result["informed_minus"]["ndcg@10"]["random"]
    assert paired["mean"] == pytest.approx(ndcg["informed"] - ndcg["random"])
    assert paired["ci95"] > 0 and len(paired["seeds"]) == 3


def test_films_are_embedded_from_the_text_a_worker_embeds():
    texts = movielens_texts([Film("1", "Toy Story", 1995, ("Animation", "Comedy"))])
    assert texts == {"1": "Toy Story (1995). Animation, Comedy. Animation, Comedy (1995)"}
    vectors = tfidf(["space opera war", "space opera romance", "romance in paris"])
    assert vectors.shape[0] == 3
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
