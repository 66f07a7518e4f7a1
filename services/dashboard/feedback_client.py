"""The Feedback panel's numbers come from the feedback service's ``GET /metrics/ctr``.

Why its API and not the feedback tables in Postgres: attribution (the window, the clock
skew, a slot counted clicked once) and the Wilson intervals are defined in one place, the
feedback service, which the dashboard may not import (services talk through Kafka, Postgres
and HTTP); a second copy of that SQL here could only drift from what ``/metrics/ctr`` and
Prometheus report. The dashboard samples the endpoint and keeps the history in memory, as
it does for lag. The price: the panel needs a running feedback service, and says so when
none answers.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from .errors import FeedbackUnavailable
from .json_api import JsonApi


class FeedbackClient:
    def __init__(self, base_url: str, token: SecretStr | None, timeout_seconds: float = 5.0):
        self.api = JsonApi(
            base_url,
            token,
            timeout_seconds=timeout_seconds,
            name="the feedback service",
            hint="is `marquee serve feedback` running (MARQUEE_DASHBOARD_FEEDBACK_URL)?",
            unavailable=FeedbackUnavailable,
        )

    async def ctr(self, window_seconds: int) -> dict[str, Any]:
        """``/metrics/ctr`` as the feedback service answers it (``groups``, ``positions``)."""
        return await self.api.get("/metrics/ctr", {"window": f"{window_seconds}s"})

    async def close(self) -> None:
        await self.api.close()
