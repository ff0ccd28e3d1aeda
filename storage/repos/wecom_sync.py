"""The customer sync's writes: bind an external contact to a member, upsert a relation.

``bind_customer`` is the sync's own ONE-ID binding (identity → member, unionid → the member
holding it, else a new member); the add-contact event builds the same rule on its side,
and the two are meant to become one function.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from storage.models import Identity
from storage.models.members import WECOM_EXTERNAL_USERID as EXTERNAL
from storage.models.members import Tag
from storage.models.wecom import CustomerTag, StaffCustomer
from storage.repos import binding
from storage.repos.members import create_with_identity, find_by_identity
from storage.timeutil import utc


async def bind_customer(
    corp: str, external_userid: str, unionid: str, now: datetime, channel: str = ""
) -> int:
    """The member for an external contact, creating or linking one (race-safe)."""
    found = await find_by_identity(EXTERNAL, corp, external_userid)
    if found is not None:
        return found.id
    holder = await binding.unionid_holder(unionid) if unionid else None
    if holder is not None:
        try:
            async with in_transaction():
                await Identity.create(
                    kind=EXTERNAL, app=corp, value=external_userid, member_id=holder,
                    created_at=utc(now),
                )  # fmt: skip
            return holder
        except IntegrityError:
            winner = await find_by_identity(EXTERNAL, corp, external_userid)
            if winner is None:
                raise
            return winner.id
    row = await create_with_identity(EXTERNAL, corp, external_userid, utc(now), channel)
    if unionid and row.created:
        result = await binding.bind_unionid(row.id, unionid, utc(now), fresh=True)
        return result.holder_id
    return row.id


@dataclass(frozen=True, slots=True)
class RelationChange:
    """What one upsert changed."""

    created: bool = False
    updated: bool = False
    tags_added: int = 0
    tags_removed: int = 0

    @property
    def changed(self) -> bool:
        """Whether anything was written."""
        return self.created or self.updated or bool(self.tags_added + self.tags_removed)


def _stamp(seconds: Any) -> datetime | None:
    value = int(seconds or 0)
    return datetime.fromtimestamp(value, UTC) if value else None


async def upsert_relation(
    corp: str, member_id: int, follow: dict[str, Any], external_userid: str, now: datetime
) -> RelationChange:
    """Make the local relation match WeCom's follow info (remark, add way, State, tags)."""
    now = utc(now)
    staff = str(follow["userid"])
    fields: dict[str, Any] = {
        "remark": str(follow.get("remark", ""))[:128],
        "description": str(follow.get("description", ""))[:255],
        "add_way": int(follow.get("add_way", 0)),
        "state": str(follow.get("state", ""))[:64],
        "status": "active",
        "ended_by": "",
        "ended_at": None,
        "added_at": _stamp(follow.get("createtime")),
    }
    async with in_transaction():
        row, created = await StaffCustomer.get_or_create(
            corp=corp,
            staff_userid=staff,
            external_userid=external_userid,
            defaults={**fields, "member_id": member_id, "created_at": now, "updated_at": now},
        )
        updated = False
        if not created and any(getattr(row, k) != v for k, v in fields.items()):
            await StaffCustomer.filter(id=row.id).update(**fields, updated_at=now)
            updated = True
        added, removed = await _sync_tags(row.id, [str(t) for t in follow.get("tag_id", [])], now)
    return RelationChange(created, updated, added, removed)


async def _sync_tags(relation_id: int, wecom_ids: list[str], now: datetime) -> tuple[int, int]:
    wanted = set(
        await Tag.filter(wecom_tag_id__in=wecom_ids or [""], deleted=False).values_list(
            "id", flat=True
        )
    )
    have = set(await CustomerTag.filter(relation_id=relation_id).values_list("tag_id", flat=True))
    added = 0
    for tag_id in wanted - have:
        _, made = await CustomerTag.get_or_create(
            relation_id=relation_id, tag_id=tag_id, defaults={"source": "sync", "created_at": now}
        )
        added += made
    gone = have - wanted
    removed = (
        await CustomerTag.filter(relation_id=relation_id, tag_id__in=list(gone)).delete()
        if gone
        else 0
    )
    return added, removed
