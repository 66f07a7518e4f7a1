"""The feedback service's HTTP API (behind MARQUEE_HTTP_TOKEN when set).

GET /metrics/ctr?window=1h   impressions, clicks, CTR and 95% CIs per model version,
                             strategy and surface, and per position, for the lists served
                             in the last ``window`` (a sliding window, default 1h)
"""

from __future__ import annotations

import asyncio

from faust.web import Request, Response, View

from shared.service import Service, params
from shared.service.params import BadParameter

from .settings import FeedbackSettings
from .store import FeedbackStore

DEFAULT_WINDOW_SECONDS = 3600
MAX_WINDOW_SECONDS = 30 * 86_400


def install_views(service: Service, store: FeedbackStore, settings: FeedbackSettings) -> None:
    @service.route("/metrics/ctr")
    class Ctr(View):
        async def get(self, request: Request) -> Response:
            try:
                window = params.duration(request.query, "window", max_seconds=MAX_WINDOW_SECONDS)
            except BadParameter as exc:
                return self.json({"error": str(exc)}, status=400)
            window = window or DEFAULT_WINDOW_SECONDS
            rates = await asyncio.to_thread(
                store.rates,
                window,
                settings.feedback_attribution_window_seconds,
                settings.feedback_clock_skew_seconds,
            )
            return self.json(
                {
                    "window_seconds": window,
                    "attribution_window_seconds": settings.feedback_attribution_window_seconds,
                    "unit": "slot: one item shown at one position of one impression",
                    "groups": [cell.as_json() for cell in rates.by_group],
                    "positions": [cell.as_json() for cell in rates.by_position],
                    "organic_clicks": rates.organic_clicks,
                }
            )
