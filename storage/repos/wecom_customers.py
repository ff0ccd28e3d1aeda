"""Staff–customer relations (StaffCustomer) and their corp tags (CustomerTag).

Every write is idempotent: the unique (corp, staff, external) key decides a race between
two deliveries of one add, ends and transfer failures are conditional updates, and tag
rows are inserted under their unique (relation, tag) key. A replay changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.exceptions import IntegrityError

from storage.models import Tag, TagGroup
from storage.models.wecom import CustomerTag, CustomerTransfer, StaffCustomer
from storage.timeutil import utc

OPEN = ("active", "pending")

# get_corp_tag_list for the given tag ids → its tag groups (the WeCom client's answer).
TagLookup = Callable[[Sequence[str]], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True, slots=True)
class RelationRow:
    """A relation as the event handlers need it; ``opened``: created or reactivated now."""

    id: int
    member_id: int
    status: str
    opened: bool


async def open_relation(
    corp: str, staff: str, external: str, member_id: int, *, status: str, state: str, now: datetime
) -> RelationRow:
    """Create the relation, or reactivate an ended one (a re-add keeps the same row).

    A ``pending`` (half) add never downgrades an ``active`` relation; an ``active`` add
    promotes a ``pending`` one.
    """
    now = utc(now)
    try:
        row = await StaffCustomer.create(
            corp=corp,
            staff_userid=staff,
            external_userid=external,
            member_id=member_id,
            state=state,
            status=status,
            added_at=now,
            created_at=now,
            updated_at=now,
        )
        return RelationRow(row.id, member_id, status, opened=True)
    except IntegrityError:
        pass
    key = {"corp": corp, "staff_userid": staff, "external_userid": external}
    reopened = await StaffCustomer.filter(**key, status="ended").update(
        status=status, ended_by="", ended_at=None, state=state, added_at=now, updated_at=now
    )
    if status == "active":
        await StaffCustomer.filter(**key, status="pending").update(status="active", updated_at=now)
    found = await StaffCustomer.get(corp=corp, staff_userid=staff, external_userid=external)
    return RelationRow(found.id, found.member_id, found.status, opened=reopened > 0)  # type: ignore[attr-defined]


async def find_relation(corp: str, staff: str, external: str) -> StaffCustomer | None:
    """The relation, if recorded."""
    return await StaffCustomer.get_or_none(corp=corp, staff_userid=staff, external_userid=external)


async def set_welcome(relation_id: int, welcome: str, now: datetime) -> None:
    """Record how the welcome went out (sent, by_console, failed)."""
    await StaffCustomer.filter(id=relation_id).update(welcome=welcome, updated_at=utc(now))


async def fill_details(relation_id: int, follow: Mapping[str, Any], now: datetime) -> None:
    """Copy a ``follow_user`` entry of externalcontact/get onto the relation."""
    values: dict[str, Any] = {
        "remark": str(follow.get("remark", ""))[:128],
        "description": str(follow.get("description", ""))[:255],
        "updated_at": utc(now),
    }
    if follow.get("add_way") is not None:
        values["add_way"] = int(follow["add_way"])
    if follow.get("state"):
        values["state"] = str(follow["state"])[:64]
    if follow.get("createtime"):
        values["added_at"] = datetime.fromtimestamp(int(follow["createtime"]), tz=utc(now).tzinfo)
    await StaffCustomer.filter(id=relation_id).update(**values)


async def end_relation(corp: str, staff: str, external: str, ended_by: str, now: datetime) -> bool:
    """End an open relation (the member stays); False when none was open (a replay)."""
    now = utc(now)
    changed = await StaffCustomer.filter(
        corp=corp, staff_userid=staff, external_userid=external, status__in=OPEN
    ).update(status="ended", ended_by=ended_by, ended_at=now, updated_at=now)
    return changed > 0


async def transfer_failed(
    corp: str, takeover: str, external: str, reason: str, now: datetime
) -> int:
    """Record a failed handover on the waiting CustomerTransfer rows and the relations.

    The event names the takeover staff member; the relation that stays is the handover
    staff member's (from the transfer row), so both are marked. Returns relations marked.
    """
    now = utc(now)
    transfers = CustomerTransfer.filter(
        takeover_userid=takeover, external_userid=external, status="waiting"
    )
    handovers = await transfers.values_list("handover_userid", flat=True)
    await transfers.update(status="failed", reason=reason[:255], updated_at=now)
    staff = {takeover, *(str(h) for h in handovers)}
    return await StaffCustomer.filter(
        corp=corp, staff_userid__in=staff, external_userid=external
    ).update(transfer_status="failed", transfer_note=reason[:255], updated_at=now)


async def ensure_tags(
    corp_tag_ids: Iterable[str], lookup: TagLookup | None = None
) -> dict[str, int]:
    """Local Tag ids for WeCom corp tag ids, creating unknown ones under their group.

    Unknown tags are looked up with ``lookup`` (get_corp_tag_list); a tag WeCom does not
    return either is left out (the tag sync will bring it). Inserts race on the unique
    wecom ids and re-read the winner.
    """
    wanted = list(dict.fromkeys(t for t in corp_tag_ids if t))
    known = dict(await Tag.filter(wecom_tag_id__in=wanted).values_list("wecom_tag_id", "id"))
    missing = [t for t in wanted if t not in known]
    if missing and lookup is not None:
        for group in await lookup(missing):
            group_id = await _ensure_group(group)
            for tag in group.get("tag", []):
                tag_id = str(tag.get("id", ""))
                if tag_id in missing and tag_id not in known:
                    known[tag_id] = await _ensure_tag(group_id, tag)
    return {t: int(known[t]) for t in wanted if t in known}


async def _ensure_group(group: Mapping[str, Any]) -> int:
    wecom_id = str(group.get("group_id", ""))
    found = await TagGroup.get_or_none(wecom_group_id=wecom_id)
    if found is not None:
        return int(found.id)
    try:
        made = await TagGroup.create(
            name=str(group.get("group_name", ""))[:64],
            source="wecom",
            wecom_group_id=wecom_id,
            sort_order=int(group.get("order", 0) or 0),
        )
        return int(made.id)
    except IntegrityError:
        return int((await TagGroup.get(wecom_group_id=wecom_id)).id)


async def _ensure_tag(group_id: int, tag: Mapping[str, Any]) -> int:
    wecom_id = str(tag["id"])
    try:
        made = await Tag.create(
            group_id=group_id,
            name=str(tag.get("name", ""))[:64],
            wecom_tag_id=wecom_id,
            sort_order=int(tag.get("order", 0) or 0),
        )
        return int(made.id)
    except IntegrityError:
        return int((await Tag.get(wecom_tag_id=wecom_id)).id)


async def sync_tags(
    relation_id: int, tag_ids: Iterable[int], now: datetime, set_by: str = ""
) -> tuple[int, int]:
    """Make the relation's CustomerTag rows exactly ``tag_ids``; (added, removed)."""
    wanted = set(tag_ids)
    have = set(await CustomerTag.filter(relation_id=relation_id).values_list("tag_id", flat=True))
    removed = 0
    gone = have - wanted
    if gone:
        removed = await CustomerTag.filter(relation_id=relation_id, tag_id__in=gone).delete()
    added = 0
    for tag_id in sorted(wanted - have):
        try:
            await CustomerTag.create(
                relation_id=relation_id,
                tag_id=tag_id,
                source="sync",
                set_by=set_by,
                created_at=utc(now),
            )
            added += 1
        except IntegrityError:
            pass
    return added, removed
