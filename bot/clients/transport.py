"""The HTTP seam: one aiohttp session, a base URL per platform, JSON in and out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp

from bot.clients.errors import ApiError, NotSent, OutcomeUnknown


class Transport:
    """Sends one API request and turns the answer into a dict or a typed error."""

    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, platform: str, timeout: float
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.platform = platform
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def request(
        self,
        method: str,
        api: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        files: Mapping[str, tuple[str, bytes]] | None = None,
    ) -> dict[str, Any]:
        """Call ``{base_url}/{api}``; errcode ≠ 0 raises :class:`ApiError`."""
        url = f"{self.base_url}/{api}"
        try:
            async with self.session.request(
                method, url, params=params, json=json, data=_form(files), timeout=self.timeout
            ) as resp:
                if resp.status >= 500:
                    raise OutcomeUnknown(self.platform, api, f"HTTP {resp.status}")
                body = await resp.json(content_type=None)
        except aiohttp.ClientConnectorError as exc:
            raise NotSent(self.platform, api, type(exc).__name__) from exc
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise OutcomeUnknown(self.platform, api, type(exc).__name__) from exc
        return self._check(api, body)

    async def download(self, url: str) -> bytes:
        """GET an absolute URL that answers with a file (no token), e.g. a QR image."""
        try:
            async with self.session.get(url, timeout=self.timeout) as resp:
                if resp.status != 200:
                    raise OutcomeUnknown(self.platform, url, f"HTTP {resp.status}")
                return await resp.read()
        except aiohttp.ClientConnectorError as exc:
            raise NotSent(self.platform, url, type(exc).__name__) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise OutcomeUnknown(self.platform, url, type(exc).__name__) from exc

    def _check(self, api: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise OutcomeUnknown(self.platform, api, "answer is not a JSON object")
        errcode = int(body.get("errcode", 0) or 0)
        if errcode:
            raise ApiError(self.platform, api, errcode, str(body.get("errmsg", "")), body)
        return body


def _form(files: Mapping[str, tuple[str, bytes]] | None) -> aiohttp.FormData | None:
    # Built per request: a FormData cannot be sent twice (retries).
    if not files:
        return None
    form = aiohttp.FormData()
    for field, (filename, data) in files.items():
        form.add_field(field, data, filename=filename, content_type="application/octet-stream")
    return form
