"""User info: https://developers.weixin.qq.com/doc/offiaccount/User_Management/Get_users_basic_information_UnionID.html"""

from __future__ import annotations

from typing import Any

from bot.clients.caller import ApiCaller


class UserApi:
    """Followers' basic information (including the unionid)."""

    def __init__(self, caller: ApiCaller) -> None:
        self.caller = caller

    async def info(self, openid: str, lang: str = "zh_CN") -> dict[str, Any]:
        """GET cgi-bin/user/info."""
        return await self.caller.call(
            "GET", "cgi-bin/user/info", params={"openid": openid, "lang": lang}, idempotent=True
        )
