"""Simulated readers: who would click what they are shown (pure: no HTTP, no Kafka).

A position-based click model (Craswell et al. 2008): a reader examines position ``p`` with
probability ``p ** -eta`` and clicks an examined item with its attractiveness, high for the
items the reader really went on to rate (their held-out future in MovieLens-100k), low for
the rest. Seeded per reader and list, so a run is reproducible whatever the order.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shared.data.movielens import Rating


@dataclass(frozen=True)
class ClickModel:
    #: How fast attention falls with position: P(examine p) = p ** -eta.
    eta: float = 1.0
    #: P(click | examined) for an item the reader rated later, and for any other.
    relevant: float = 0.8
    irrelevant: float = 0.03

    def clicks(
        self, shown: Sequence[str], future: set[str], *, seed: int, reader: str, list_no: int = 0
    ) -> list[int]:
        """The positions (1-based) this reader clicks in ``shown``."""
        rng = random.Random(f"{seed}/{reader}/{list_no}")
        clicked = []
        for position, item in enumerate(shown, start=1):
            examined = rng.random() < position**-self.eta
            attractive = rng.random() < (self.relevant if item in future else self.irrelevant)
            if examined and attractive:
                clicked.append(position)
        return clicked


def future_items(ratings: Iterable[Rating], holdout: float = 0.2) -> dict[str, set[str]]:
    """Each reader's last ``holdout`` share of ratings (by time): what they go on to read."""
    by_user: dict[str, list[Rating]] = defaultdict(list)
    for rating in ratings:
        by_user[rating.user_id].append(rating)
    future = {}
    for user, rated in by_user.items():
        rated.sort(key=lambda r: (r.timestamp, r.item_id))
        keep = max(1, round(len(rated) * holdout))
        future[user] = {r.item_id for r in rated[-keep:]}
    return future
