"""Contact ways (渠道活码): https://developer.work.weixin.qq.com/document/path/92228"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.clients.caller import ApiCaller


class ContactWayApi:
    """QR codes that add a staff member and carry a State for attribution."""

    def __init__(self, caller: ApiCaller) -> None:
        self.caller = caller

    async def add(self, state: str, users: Sequence[str], single: bool = True) -> dict[str, Any]:
        """POST add_contact_way → {config_id, qr_code}."""
        body = {"type": 1 if single else 2, "scene": 2, "state": state, "user": list(users)}
        return await self.caller.call("POST", "cgi-bin/externalcontact/add_contact_way", json=body)
