"""Customers (客户): https://developer.work.weixin.qq.com/document/path/92114 (get),
92113 (list), 92994 (batch/get_by_user), 92571 (get_follow_user_list),
92137 (send_welcome_msg)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.clients.caller import ApiCaller
from bot.clients.errors import ApiError

NO_CUSTOMERS = 84061


class ExternalContactApi:
    """Read customers and their follow info; welcome new ones."""

    def __init__(self, caller: ApiCaller) -> None:
        self.caller = caller

    async def get(self, external_userid: str) -> dict[str, Any]:
        """GET externalcontact/get → {external_contact, follow_user}."""
        return await self.caller.call(
            "GET",
            "cgi-bin/externalcontact/get",
            params={"external_userid": external_userid},
            idempotent=True,
        )

    async def list_ids(self, userid: str) -> list[str]:
        """GET externalcontact/list → the staff member's customers' ids (none: [])."""
        try:
            body = await self.caller.call(
                "GET", "cgi-bin/externalcontact/list", params={"userid": userid}, idempotent=True
            )
        except ApiError as exc:
            if exc.errcode == NO_CUSTOMERS:  # the API's answer for a staff member without any
                return []
            raise
        return [str(x) for x in body.get("external_userid", [])]

    async def batch_by_user(
        self, userids: Sequence[str], cursor: str = "", limit: int = 100
    ) -> tuple[list[dict[str, Any]], str]:
        """POST externalcontact/batch/get_by_user → (page, next_cursor)."""
        body = await self.caller.call(
            "POST",
            "cgi-bin/externalcontact/batch/get_by_user",
            json={"userid_list": list(userids), "cursor": cursor, "limit": min(limit, 100)},
            idempotent=True,
        )
        return list(body.get("external_contact_list", [])), str(body.get("next_cursor", ""))

    async def follow_users(self) -> list[str]:
        """GET externalcontact/get_follow_user_list → staff with customer contact."""
        body = await self.caller.call(
            "GET", "cgi-bin/externalcontact/get_follow_user_list", idempotent=True
        )
        return [str(x) for x in body.get("follow_user", [])]

    async def send_welcome(
        self, welcome_code: str, text: str, attachments: Sequence[Mapping[str, Any]] = ()
    ) -> dict[str, Any]:
        """POST externalcontact/send_welcome_msg (once per WelcomeCode, within 20 s)."""
        body: dict[str, Any] = {"welcome_code": welcome_code, "text": {"content": text}}
        if attachments:
            body["attachments"] = list(attachments)
        return await self.caller.call(
            "POST", "cgi-bin/externalcontact/send_welcome_msg", json=body, idempotent=True
        )
