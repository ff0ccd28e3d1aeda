"""The WeCom corp tag library mirrored into TagGroup/Tag, and tagging customers.

WeCom keeps corp tags per staff–customer relation (mark_tag), so a tag on a customer is a
CustomerTag on one StaffCustomer row; MemberTag holds local tags of members no staff
member has added. ``member_tags`` is the union both ``members show`` and the API use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.exceptions import IntegrityError

from bot.clients.errors import ApiError
from bot.clients.wecom.tags import CorpTagApi
from storage.models import CustomerTag, MemberTag, StaffCustomer, Tag, TagGroup

DEFAULT_GROUP = "SCRM"
TAG_EXISTS = 40071  # add_corp_tag: the name is taken in the group
MAX_TAG = 30  # WeCom's tag name limit


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one library sync saw and changed."""

    groups: int
    tags: int
    deleted: int


async def sync_tags(api: CorpTagApi) -> SyncResult:
    """Mirror get_corp_tag_list into TagGroup/Tag (ids, names, order); groups and tags
    WeCom no longer lists are marked deleted. Running it again changes nothing."""
    groups = await api.list_groups()
    group_ids, tag_ids = [], []
    for data in groups:
        if data.get("deleted"):
            continue
        group = await _upsert_group(data)
        group_ids.append(group.wecom_group_id)
        for item in data.get("tag", []):
            if not item.get("deleted"):
                tag_ids.append((await _upsert_tag(group, item)).wecom_tag_id)
    gone = (
        await TagGroup.filter(wecom_group_id__not_isnull=True, deleted=False)
        .exclude(wecom_group_id__in=group_ids)
        .update(deleted=True)
    )
    gone += (
        await Tag.filter(wecom_tag_id__not_isnull=True, deleted=False)
        .exclude(wecom_tag_id__in=tag_ids)
        .update(deleted=True)
    )
    return SyncResult(len(group_ids), len(tag_ids), gone)


async def _upsert_group(data: Mapping[str, Any]) -> TagGroup:
    gid = str(data["group_id"])
    values: dict[str, Any] = {
        "name": str(data.get("group_name", ""))[:64],
        "sort_order": int(data.get("order", 0)),
        "deleted": False,
        "source": "wecom",
    }
    if not await TagGroup.filter(wecom_group_id=gid).update(**values):
        try:
            return await TagGroup.create(wecom_group_id=gid, **values)
        except IntegrityError:  # created meanwhile by a racing sync
            await TagGroup.filter(wecom_group_id=gid).update(**values)
    return await TagGroup.get(wecom_group_id=gid)


async def _upsert_tag(group: TagGroup, data: Mapping[str, Any]) -> Tag:
    tid = str(data["id"])
    values: dict[str, Any] = {
        "group_id": group.id,
        "name": str(data.get("name", ""))[:64],
        "sort_order": int(data.get("order", 0)),
        "deleted": False,
    }
    if not await Tag.filter(wecom_tag_id=tid).update(**values):
        try:
            return await Tag.create(wecom_tag_id=tid, **values)
        except IntegrityError:
            await Tag.filter(wecom_tag_id=tid).update(**values)
    return await Tag.get(wecom_tag_id=tid)


async def find_tags(names: Iterable[str]) -> dict[str, Tag]:
    """Live WeCom tags by name (the first in library order when two groups share one)."""
    wanted = list(dict.fromkeys(names))
    rows = await Tag.filter(name__in=wanted, deleted=False, wecom_tag_id__not_isnull=True).order_by(
        "-sort_order", "id"
    )
    found: dict[str, Tag] = {}
    for row in rows:
        found.setdefault(row.name, row)
    return found


async def ensure_tags(
    api: CorpTagApi, names: Sequence[str], group: str = DEFAULT_GROUP
) -> list[Tag]:
    """The WeCom tags with these names, creating the missing ones (add_corp_tag into the
    group, by name: WeCom creates the group when new). A name taken meanwhile (40071)
    is picked up by syncing the library."""
    names = [n.strip()[:MAX_TAG] for n in names if n.strip()]
    found = await find_tags(names)
    missing = [n for n in dict.fromkeys(names) if n not in found]
    if missing:
        try:
            data = await api.add(group, [{"name": n} for n in missing])
        except ApiError as exc:
            if exc.errcode != TAG_EXISTS:
                raise
            await sync_tags(api)
            still = [n for n in missing if n not in await find_tags(missing)]
            data = await api.add(group, [{"name": n} for n in still]) if still else {}
        if data:
            made = await _upsert_group(data)
            for item in data.get("tag", []):
                await _upsert_tag(made, item)
        found = await find_tags(names)
    return [found[n] for n in dict.fromkeys(names) if n in found]


async def mark(
    api: CorpTagApi,
    relation: StaffCustomer,
    add: Sequence[Tag],
    remove: Sequence[Tag],
    *,
    source: str,
    set_by: str,
    now: datetime,
) -> None:
    """mark_tag on the relation, then mirror it locally as CustomerTag rows."""
    if await push(api, relation, add, remove):
        await mirror(relation, add, remove, source=source, set_by=set_by, now=now)


async def push(
    api: CorpTagApi, relation: StaffCustomer, add: Sequence[Tag], remove: Sequence[Tag]
) -> bool:
    """mark_tag on the relation (False: nothing to change)."""
    add_ids = [t.wecom_tag_id for t in add if t.wecom_tag_id]
    remove_ids = [t.wecom_tag_id for t in remove if t.wecom_tag_id and t not in add]
    if not add_ids and not remove_ids:
        return False
    await api.mark(relation.staff_userid, relation.external_userid, add_ids, remove_ids)
    return True


async def mirror(
    relation: StaffCustomer,
    add: Sequence[Tag],
    remove: Sequence[Tag],
    *,
    source: str,
    set_by: str,
    now: datetime,
) -> None:
    """The relation's CustomerTag rows after a mark_tag (an existing row is kept)."""
    rows = [
        CustomerTag(
            relation_id=relation.id, tag_id=t.id, source=source, set_by=set_by, created_at=now
        )
        for t in add
    ]
    if rows:
        await CustomerTag.bulk_create(rows, ignore_conflicts=True)
    drop = [t.id for t in remove if t not in add]
    if drop:
        await CustomerTag.filter(relation_id=relation.id, tag_id__in=drop).delete()


async def mirror_local(
    member_id: int, add: Sequence[Tag], remove: Sequence[Tag], *, set_by: str, now: datetime
) -> None:
    """Local MemberTag rows (source local) for a member no staff member has added."""
    rows = [
        MemberTag(member_id=member_id, tag_id=t.id, source="local", set_by=set_by, created_at=now)
        for t in add
    ]
    if rows:
        await MemberTag.bulk_create(rows, ignore_conflicts=True)
    drop = [t.id for t in remove if t not in add]
    if drop:
        await MemberTag.filter(member_id=member_id, tag_id__in=drop).delete()


async def member_tags(member_id: int) -> list[dict[str, Any]]:
    """The member's tags: corp tags on every active relation, then local MemberTag rows;
    each with its group, source, who set it and (for corp tags) the staff member."""
    out: list[dict[str, Any]] = []
    rows = (
        await CustomerTag.filter(
            relation__member_id=member_id, relation__status="active", tag__deleted=False
        )
        .order_by("tag__sort_order", "tag_id")
        .prefetch_related("tag__group", "relation")
    )
    for row in rows:
        out.append(
            {
                "name": row.tag.name,
                "group": row.tag.group.name,
                "source": row.source,
                "set_by": row.set_by,
                "staff": row.relation.staff_userid,
            }
        )
    local = (
        await MemberTag.filter(member_id=member_id, tag__deleted=False)
        .order_by("tag_id")
        .prefetch_related("tag__group")
    )
    for item in local:
        out.append(
            {
                "name": item.tag.name,
                "group": item.tag.group.name,
                "source": item.source,
                "set_by": item.set_by,
                "staff": "",
            }
        )
    return out


def tag_names(tags: Iterable[Mapping[str, Any]]) -> list[str]:
    """Distinct tag names in order."""
    return list(dict.fromkeys(str(t["name"]) for t in tags))
