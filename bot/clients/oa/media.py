"""Temporary media: https://developers.weixin.qq.com/doc/offiaccount/Asset_Management/New_temporary_materials.html"""

from __future__ import annotations

from typing import Any

from bot.clients.caller import ApiCaller


class MediaApi:
    """Temporary media upload (valid 3 days), e.g. a QR image to send back."""

    def __init__(self, caller: ApiCaller) -> None:
        self.caller = caller

    async def upload(self, kind: str, filename: str, data: bytes) -> dict[str, Any]:
        """POST cgi-bin/media/upload?type=KIND (multipart field ``media``)."""
        return await self.caller.call(
            "POST", "cgi-bin/media/upload", params={"type": kind}, files={"media": (filename, data)}
        )
