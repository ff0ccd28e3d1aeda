"""Customer groups (客户群): apply a groupchat/get answer to the local roster.

Applying the same answer twice changes nothing; a member missing from the answer is
marked as having left (``left_at``, ``quit_scene``), one present again rejoins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise.transactions import in_transaction

from storage.models import Identity
from storage.models.members import WECOM_EXTERNAL_USERID as EXTERNAL
from storage.models.wecom import CustomerGroup, GroupMember
from storage.timeutil import utc


@dataclass(frozen=True, slots=True)
class RosterChange:
    """What applying one groupchat/get answer changed."""

    created: bool = False
    group_changed: bool = False
    joined: int = 0
    left: int = 0
    updated: int = 0

    @property
    def changed(self) -> bool:
        """Whether anything was written."""
        return self.created or self.group_changed or bool(self.joined + self.left + self.updated)


def _stamp(seconds: Any) -> datetime | None:
    value = int(seconds or 0)
    return datetime.fromtimestamp(value, UTC) if value else None


async def _member_ids(corp: str, userids: list[str]) -> dict[str, int]:
    if not userids:
        return {}
    rows = await Identity.filter(kind=EXTERNAL, app=corp, value__in=userids).values(
        "value", "member_id"
    )
    return {str(r["value"]): int(r["member_id"]) for r in rows}


async def apply_chat(
    corp: str, chat: dict[str, Any], now: datetime, quit_scene: int | None = None
) -> RosterChange:
    """Make the local group and roster match ``chat`` (a groupchat/get ``group_chat``)."""
    now = utc(now)
    chat_id = str(chat["chat_id"])
    fields: dict[str, Any] = {
        "name": str(chat.get("name", "")),
        "owner_userid": str(chat.get("owner", "")),
        "notice": str(chat.get("notice", "")),
        "member_version": str(chat.get("member_version", "")),
        "group_created_at": _stamp(chat.get("create_time")),
        "status": "active",
        "dismissed_at": None,
    }
    members = [m for m in chat.get("member_list", []) if m.get("userid")]
    externals = [str(m["userid"]) for m in members if int(m.get("type", 2)) == 2]
    linked = await _member_ids(corp, externals)
    async with in_transaction():
        group, created = await CustomerGroup.get_or_create(
            chat_id=chat_id, defaults={**fields, "updated_at": now}
        )
        group = await CustomerGroup.select_for_update().get(id=group.id)
        group_changed = not created and _differs(group, fields)
        if group_changed:
            await CustomerGroup.filter(id=group.id).update(**fields, updated_at=now)
        joined = updated = 0
        present = set()
        for item in members:
            userid = str(item["userid"])
            present.add(userid)
            outcome = await _apply_member(group.id, item, linked.get(userid), now)
            joined += outcome == "joined"
            updated += outcome == "updated"
        left = await GroupMember.filter(
            group_id=group.id, left_at__isnull=True, userid__not_in=list(present) or [""]
        ).update(left_at=now, quit_scene=quit_scene, updated_at=now)
    return RosterChange(created, group_changed, joined, left, updated)


def _differs(row: Any, fields: dict[str, Any]) -> bool:
    return any(getattr(row, key) != value for key, value in fields.items())


async def _apply_member(
    group_id: int, item: dict[str, Any], member_id: int | None, now: datetime
) -> str:
    invitor = item.get("invitor") or {}
    fields: dict[str, Any] = {
        "type": int(item.get("type", 2)),
        "group_nickname": str(item.get("group_nickname", ""))[:64],
        "join_scene": int(item.get("join_scene", 0)),
        "join_time": _stamp(item.get("join_time")),
        "invitor": str(invitor.get("userid", "")) if isinstance(invitor, dict) else "",
        "left_at": None,
        "quit_scene": None,
    }
    if member_id is not None:
        fields["member_id"] = member_id
    row, created = await GroupMember.get_or_create(
        group_id=group_id, userid=str(item["userid"]), defaults={**fields, "updated_at": now}
    )
    if created:
        return "joined"
    if not _differs(row, fields):
        return "same"
    rejoined = row.left_at is not None
    await GroupMember.filter(id=row.id).update(**fields, updated_at=now)
    return "joined" if rejoined else "updated"


async def dismiss(chat_id: str, now: datetime) -> bool:
    """Mark a group dismissed (once); False when unknown or already dismissed."""
    now = utc(now)
    return (
        await CustomerGroup.filter(chat_id=chat_id)
        .exclude(status="dismissed")
        .update(status="dismissed", dismissed_at=now, updated_at=now)
        > 0
    )


async def ensure_dismissed(chat_id: str, now: datetime) -> bool:
    """Record a dismissed group we never saw (so the roster shows it); True if created."""
    now = utc(now)
    _, created = await CustomerGroup.get_or_create(
        chat_id=chat_id, defaults={"status": "dismissed", "dismissed_at": now, "updated_at": now}
    )
    return created
