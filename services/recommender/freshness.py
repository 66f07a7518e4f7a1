"""Between retrains: fold changed users and new items into the active model, share them.

The worker that ingested a batch folds its users in from their full history (and gives
new items factors from their users), then upserts the factors into the version's factor
tables. Every worker polls those tables, so a user folded in by one worker is answered
alike by all of them; a worker that starts later loads the fold-ins with the version.
Storage is reached through the protocols of :mod:`.persistence` only.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from .persistence import FactorStore, HistoryStore
from .serving import Loaded

log = logging.getLogger(__name__)

#: Re-read fold-ins this far back each poll: a transaction that stamped ``updated_at``
#: before the previous poll may have committed after it.
COMMIT_SLACK = timedelta(seconds=3)


@dataclass
class FoldIn:
    """What one fold-in changed (for metrics and tests)."""

    users: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)


async def fold_in(
    histories: HistoryStore,
    factors: FactorStore,
    loaded: Loaded,
    user_ids: set[str],
    item_ids: set[str],
) -> FoldIn:
    """Fold the batch's users (and its items the model lacks) in, and store their factors.

    Database work runs in threads; the model changes on the event loop, between requests,
    so an HTTP view never sees an item map and factor matrix of different lengths."""
    rec, version = loaded.recommender, loaded.version.id
    done = FoldIn()
    new_items = sorted(i for i in item_ids if i not in rec.items)
    if new_items:
        found, kinds = await asyncio.gather(
            asyncio.to_thread(histories.item_histories, new_items),
            asyncio.to_thread(histories.item_kinds, new_items),
        )
        done.items = rec.fold_in_items(found, kinds)
    users = await asyncio.to_thread(histories.histories, sorted(user_ids))
    for n, (user, history) in enumerate(users.items()):
        if rec.fold_in(user, history):
            done.users.append(user)
        if n % 50 == 49:
            await asyncio.sleep(0)  # let HTTP requests in between users
    for side, ids in (("item", done.items), ("user", done.users)):
        rows = [(i, rec.factors_of(side, i)) for i in ids]
        await asyncio.to_thread(factors.upsert_factors, version, side, rows)
    return done


async def catch_up(histories: HistoryStore, factors: FactorStore, loaded: Loaded) -> FoldIn:
    """Fold in what was ingested while the version trained: without this, a user who
    clicked during a retrain would get the new version's older view of them. Called again
    once the version is served, it folds in what was stored since the previous call: the
    batches ingested while catching up, whose own fold-in found no version to fold into."""
    data_until = loaded.version.metrics.get("data_until")
    if data_until is None:  # trained before versions recorded it
        return FoldIn()
    since = loaded.caught_up_to or datetime.fromisoformat(data_until)
    users, items, loaded.caught_up_to = await asyncio.to_thread(
        histories.ingested_since, since - COMMIT_SLACK
    )
    return await fold_in(histories, factors, loaded, users, items)


async def sync(histories: HistoryStore, factors: FactorStore, loaded: Loaded) -> int:
    """Adopt fold-ins other workers stored since the last call; returns how many changed."""
    rec = loaded.recommender
    since = loaded.synced_from - COMMIT_SLACK
    updates, read_at = await asyncio.to_thread(factors.factor_updates, loaded.version.id, since)
    # Our own fold-ins (and ones already adopted) come back identical: nothing to do.
    changed = [
        u for u in updates if not np.array_equal(rec.factors_of(u.side, u.external_id), u.factors)
    ]
    items = [u.external_id for u in changed if u.side == "item"]
    users = [u.external_id for u in changed if u.side == "user"]
    kinds = await asyncio.to_thread(histories.item_kinds, items) if items else {}
    found = await asyncio.to_thread(histories.histories, users) if users else {}
    for update in sorted(changed, key=lambda u: u.side != "item"):  # items first
        rec.set_factors(
            update.side,
            update.external_id,
            update.factors,
            history=found.get(update.external_id, ()),
            kind=kinds.get(update.external_id),
        )
    # Next time from this read's start: with COMMIT_SLACK, a fold-in stamped before it but
    # committed after it is still found, and everything older is not read again.
    loaded.synced_from = max(loaded.synced_from, read_at)
    if changed:
        log.debug("adopted %s fold-ins from other workers", len(changed))
    return len(changed)
