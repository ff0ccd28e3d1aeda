"""Group-send tasks staff confirm: https://developer.work.weixin.qq.com/document/path/92135
(add_msg_template) and 93338 (get_groupmsg_send_result)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.clients.caller import ApiCaller


class GroupMsgApi:
    """企业群发: one task per staff member, sent when the staff member confirms."""

    def __init__(self, caller: ApiCaller) -> None:
        self.caller = caller

    async def add_template(
        self, sender: str, recipients: Sequence[str], text: str, chat_type: str = "single"
    ) -> dict[str, Any]:
        """POST add_msg_template → {msgid, fail_list}; ``recipients`` are external userids
        (single) or chat ids (group: ``chat_id_list``, empty = all the sender's groups)."""
        body: dict[str, Any] = {"chat_type": chat_type, "sender": sender, "text": {"content": text}}
        if chat_type == "single":
            body["external_userid"] = list(recipients)
        elif recipients:
            body["chat_id_list"] = list(recipients)
        return await self.caller.call("POST", "cgi-bin/externalcontact/add_msg_template", json=body)

    async def send_result(
        self, msgid: str, userid: str, cursor: str = "", limit: int = 1000
    ) -> tuple[list[dict[str, Any]], str]:
        """POST get_groupmsg_send_result → (send_list page, next_cursor)."""
        body = await self.caller.call(
            "POST",
            "cgi-bin/externalcontact/get_groupmsg_send_result",
            json={"msgid": msgid, "userid": userid, "limit": limit, "cursor": cursor},
            idempotent=True,
        )
        return list(body.get("send_list", [])), str(body.get("next_cursor", ""))
