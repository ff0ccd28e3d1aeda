"""Custom menu: https://developers.weixin.qq.com/doc/offiaccount/Custom_Menus/Creating_Custom-Defined_Menu.html"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.clients.caller import ApiCaller


class MenuApi:
    """The account's custom menu."""

    def __init__(self, caller: ApiCaller) -> None:
        self.caller = caller

    async def create(self, buttons: Sequence[Mapping[str, Any]]) -> None:
        """POST cgi-bin/menu/create (replaces the whole menu; idempotent)."""
        await self.caller.call(
            "POST", "cgi-bin/menu/create", json={"button": list(buttons)}, idempotent=True
        )
