"""The explorer's recommendations come from the recommender's own HTTP API.

Why HTTP and not ``services/recommender/serving.py`` in this process: the API answers with
the very code path and state apps get (the active version as that worker holds it, fold-ins
and seen-item filtering included), so the explorer can never disagree with production; and
the dashboard stays out of loading factor matrices, implicit and scipy and of keeping a
second model copy in sync, which would cost memory and CPU its budget (< 10% of a core)
does not have. The price: the explorer needs a running recommender, and says so when none
answers.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pydantic import SecretStr

from .errors import RecommenderUnavailable
from .json_api import JsonApi


class RecommenderClient:
    def __init__(self, base_url: str, token: SecretStr | None, timeout_seconds: float = 3.0):
        self.api = JsonApi(
            base_url,
            token,
            timeout_seconds=timeout_seconds,
            name="the recommender",
            hint="is `marquee serve recommender` running (MARQUEE_DASHBOARD_RECOMMENDER_URL)?",
            unavailable=RecommenderUnavailable,
        )

    async def recommendations(self, user_id: str, k: int) -> dict[str, Any]:
        """``{"items": [{"item_id", "score", "title", "kind"}], "strategy", "model_version"}``
        as served (``title`` is ``None`` for an item the catalog does not name)."""
        return await self.api.get(
            f"/users/{quote(user_id, safe='')}/recommendations", {"k": str(k)}
        )

    async def close(self) -> None:
        await self.api.close()
