"""Parameter QR codes: https://developers.weixin.qq.com/doc/offiaccount/Account_Management/Generating_a_Parametric_QR_Code.html"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from bot.clients.caller import ApiCaller

MAX_TEMPORARY_SECONDS = 2_592_000  # 30 days, the platform's maximum


class QrCodeApi:
    """Temporary and permanent scene QR codes."""

    def __init__(self, caller: ApiCaller, mp_base_url: str) -> None:
        self.caller = caller
        self.mp_base_url = mp_base_url.rstrip("/")

    async def temporary(
        self, scene: str, expire_seconds: int = MAX_TEMPORARY_SECONDS
    ) -> dict[str, Any]:
        """A QR_STR_SCENE code valid up to 30 days → {ticket, expire_seconds, url}."""
        body = {
            "expire_seconds": min(expire_seconds, MAX_TEMPORARY_SECONDS),
            "action_name": "QR_STR_SCENE",
            "action_info": {"scene": {"scene_str": scene}},
        }
        return await self.caller.call("POST", "cgi-bin/qrcode/create", json=body)

    async def permanent(self, scene: str) -> dict[str, Any]:
        """A QR_LIMIT_STR_SCENE code (channel codes) → {ticket, url}."""
        body = {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": scene}}}
        return await self.caller.call("POST", "cgi-bin/qrcode/create", json=body)

    def show_url(self, ticket: str) -> str:
        """Where the QR image for a ticket is served (no token needed)."""
        return f"{self.mp_base_url}/cgi-bin/showqrcode?ticket={quote(ticket, safe='')}"

    async def image(self, ticket: str) -> bytes:
        """The QR image (PNG) of a ticket, from its ``showqrcode`` URL."""
        return await self.caller.transport.download(self.show_url(ticket))
