"""Customer handover: https://developer.work.weixin.qq.com/document/path/92125 (in service),
92124 (resigned staff), 94088 (transfer_result)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.clients.caller import ApiCaller


class TransferApi:
    """Move customers from one staff member to another."""

    def __init__(self, caller: ApiCaller) -> None:
        self.caller = caller

    async def transfer(
        self, handover: str, takeover: str, external_userids: Sequence[str], resigned: bool = False
    ) -> list[dict[str, Any]]:
        """POST transfer_customer (or resigned/transfer_customer) → per-customer errcodes."""
        api = "cgi-bin/externalcontact/" + (
            "resigned/transfer_customer" if resigned else "transfer_customer"
        )
        body = {
            "handover_userid": handover,
            "takeover_userid": takeover,
            "external_userid": list(external_userids),
        }
        result = await self.caller.call("POST", api, json=body)
        return list(result.get("customer", []))

    async def result(
        self, handover: str, takeover: str, cursor: str = ""
    ) -> tuple[list[dict[str, Any]], str]:
        """POST transfer_result → (customers with status, next_cursor)."""
        body = {"handover_userid": handover, "takeover_userid": takeover, "cursor": cursor}
        result = await self.caller.call(
            "POST", "cgi-bin/externalcontact/transfer_result", json=body, idempotent=True
        )
        return list(result.get("customer", [])), str(result.get("next_cursor", ""))
