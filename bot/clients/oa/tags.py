"""User tags: https://developers.weixin.qq.com/doc/offiaccount/User_Management/User_Tag_Management.html"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.clients.caller import ApiCaller


class TagApi:
    """OA user tags (used by mass send by tag)."""

    def __init__(self, caller: ApiCaller) -> None:
        self.caller = caller

    async def list_tags(self) -> list[dict[str, Any]]:
        """GET cgi-bin/tags/get."""
        body = await self.caller.call("GET", "cgi-bin/tags/get", idempotent=True)
        return list(body.get("tags", []))

    async def create(self, name: str) -> dict[str, Any]:
        """POST cgi-bin/tags/create → the new tag {id, name}."""
        body = await self.caller.call("POST", "cgi-bin/tags/create", json={"tag": {"name": name}})
        return dict(body["tag"])

    async def tag_users(self, tag_id: int, openids: Sequence[str]) -> None:
        """POST cgi-bin/tags/members/batchtagging (idempotent by nature)."""
        body = {"openid_list": list(openids), "tagid": tag_id}
        await self.caller.call(
            "POST", "cgi-bin/tags/members/batchtagging", json=body, idempotent=True
        )

    async def untag_users(self, tag_id: int, openids: Sequence[str]) -> None:
        """POST cgi-bin/tags/members/batchuntagging."""
        body = {"openid_list": list(openids), "tagid": tag_id}
        await self.caller.call(
            "POST", "cgi-bin/tags/members/batchuntagging", json=body, idempotent=True
        )

    async def of_user(self, openid: str) -> list[int]:
        """POST cgi-bin/tags/getidlist → the user's tag ids."""
        body = await self.caller.call(
            "POST", "cgi-bin/tags/getidlist", json={"openid": openid}, idempotent=True
        )
        return [int(t) for t in body.get("tagid_list", [])]
