"""Customer groups: https://developer.work.weixin.qq.com/document/path/92120 (list),
92122 (get)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.clients.caller import ApiCaller


class GroupChatApi:
    """客户群 lists and details."""

    def __init__(self, caller: ApiCaller) -> None:
        self.caller = caller

    async def list_chats(
        self, owners: Sequence[str] = (), cursor: str = "", limit: int = 100
    ) -> tuple[list[dict[str, Any]], str]:
        """POST groupchat/list → (page, next_cursor)."""
        body: dict[str, Any] = {"status_filter": 0, "cursor": cursor, "limit": limit}
        if owners:
            body["owner_filter"] = {"userid_list": list(owners)}
        result = await self.caller.call(
            "POST", "cgi-bin/externalcontact/groupchat/list", json=body, idempotent=True
        )
        return list(result.get("group_chat_list", [])), str(result.get("next_cursor", ""))

    async def get(self, chat_id: str) -> dict[str, Any]:
        """POST groupchat/get → the group with members and member_version."""
        result = await self.caller.call(
            "POST",
            "cgi-bin/externalcontact/groupchat/get",
            json={"chat_id": chat_id, "need_name": 1},
            idempotent=True,
        )
        return dict(result.get("group_chat", {}))
