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

import asyncio
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import SecretStr

from .errors import RecommenderUnavailable


class RecommenderClient:
    def __init__(self, base_url: str, token: SecretStr | None, timeout_seconds: float = 3.0):
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def recommendations(self, user_id: str, k: int) -> dict[str, Any]:
        """``{"items": [{"item_id", "score", "title", "kind"}], "strategy", "model_version"}``
        as served (``title`` is ``None`` for an item the catalog does not name)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        url = f"{self.base_url}/users/{quote(user_id, safe='')}/recommendations"
        try:
            async with self._session.get(url, params={"k": str(k)}) as response:
                body = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise RecommenderUnavailable(
                f"cannot reach the recommender at {self.base_url} ({type(exc).__name__}); "
                "is `marquee serve recommender` running (MARQUEE_DASHBOARD_RECOMMENDER_URL)?"
            ) from exc
        if status != 200:
            reason = body.get("error") if isinstance(body, dict) else None
            raise RecommenderUnavailable(f"the recommender answered {status}: {reason or body}")
        return body

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            await asyncio.sleep(0)  # let aiohttp close its connections
