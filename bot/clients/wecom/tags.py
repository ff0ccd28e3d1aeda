"""Corp tags: https://developer.work.weixin.qq.com/document/path/92117 (library),
92118 (mark_tag; tags are per staff–customer relation)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.clients.caller import ApiCaller


class CorpTagApi:
    """The corp tag library and tagging customers."""

    def __init__(self, caller: ApiCaller) -> None:
        self.caller = caller

    async def list_groups(
        self, tag_ids: Sequence[str] = (), group_ids: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """POST get_corp_tag_list → tag groups with their tags."""
        body = await self.caller.call(
            "POST",
            "cgi-bin/externalcontact/get_corp_tag_list",
            json={"tag_id": list(tag_ids), "group_id": list(group_ids)},
            idempotent=True,
        )
        return list(body.get("tag_group", []))

    async def add(
        self, group_name: str, tags: Sequence[Mapping[str, Any]], group_id: str = ""
    ) -> dict[str, Any]:
        """POST add_corp_tag (into an existing group by id, or a new group by name)."""
        body: dict[str, Any] = {"tag": list(tags)}
        if group_id:
            body["group_id"] = group_id
        else:
            body["group_name"] = group_name
        result = await self.caller.call("POST", "cgi-bin/externalcontact/add_corp_tag", json=body)
        return dict(result.get("tag_group", {}))

    async def mark(
        self,
        userid: str,
        external_userid: str,
        add: Sequence[str] = (),
        remove: Sequence[str] = (),
    ) -> None:
        """POST mark_tag (idempotent: the same tags end up set)."""
        body = {
            "userid": userid,
            "external_userid": external_userid,
            "add_tag": list(add),
            "remove_tag": list(remove),
        }
        await self.caller.call(
            "POST", "cgi-bin/externalcontact/mark_tag", json=body, idempotent=True
        )
