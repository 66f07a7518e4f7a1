"""A keep-alive JSON client for another service's HTTP API (the recommender's, the feedback
service's): bearer token, a total timeout, and one error class that names what to start."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from pydantic import SecretStr

from .errors import DashboardError


class JsonApi:
    def __init__(
        self,
        base_url: str,
        token: SecretStr | None,
        *,
        timeout_seconds: float,
        name: str,
        hint: str,
        unavailable: type[DashboardError],
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None
        self._name, self._hint, self._unavailable = name, hint, unavailable

    async def get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        """The answer's JSON object; anything else raises ``unavailable`` with the reason."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        try:
            async with self._session.get(f"{self.base_url}{path}", params=params) as response:
                body = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise self._unavailable(
                f"cannot reach {self._name} at {self.base_url} ({type(exc).__name__}); {self._hint}"
            ) from exc
        if status != 200 or not isinstance(body, dict):
            reason = body.get("error") if isinstance(body, dict) else None
            raise self._unavailable(f"{self._name} answered {status}: {reason or body}")
        return body

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            await asyncio.sleep(0)  # let aiohttp close its connections
