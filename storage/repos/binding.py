"""Binding a follower: the channel of a new member, the unionid, the automatic merge.

The unique key (kind, app, value) of ``identity`` decides every race: whoever inserts the
unionid first holds it; the other reads the holder. The one automatic merge (a member
created by this follow, with nothing of its own, into the unionid's holder) is one
transaction that starts by claiming the fresh member's row, so a concurrent ledger write
or a second merge of the same member waits for it and then finds it merged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from storage.models import Identity, Member, MemberMerge, PointsEntry
from storage.models.members import UNIONID

MERGE_ACTOR = "system:unionid"

Outcome = Literal["bound", "held", "merged", "conflict", "skipped"]


@dataclass(frozen=True, slots=True)
class BindResult:
    """What binding a unionid did; ``holder_id`` is the member who holds it now."""

    outcome: Outcome
    holder_id: int
    moved: list[int] = field(default_factory=list)
    reason: str = ""


class _NotFresh(Exception):
    """Rolls the merge back: the fresh member turned out to have something of its own."""

    def __init__(self, reason: str, outcome: Outcome = "conflict") -> None:
        super().__init__(reason)
        self.outcome: Outcome = outcome


async def set_channel_if_blank(member_id: int, channel: str) -> bool:
    """Record a member's channel unless one is recorded already (never overwritten)."""
    return await Member.filter(id=member_id, channel="").update(channel=channel) > 0


async def unionid_holder(unionid: str) -> int | None:
    """The member holding a unionid, if any."""
    rows = await Identity.filter(kind=UNIONID, app="", value=unionid).values("member_id")
    return int(rows[0]["member_id"]) if rows else None


async def bind_unionid(member_id: int, unionid: str, now: datetime, *, fresh: bool) -> BindResult:
    """Give the member the unionid, or merge a fresh member into the unionid's holder."""
    holder = await unionid_holder(unionid)
    if holder is None:
        other = await Identity.filter(member_id=member_id, kind=UNIONID).exists()
        if other:
            return BindResult("conflict", member_id, reason="member holds another unionid")
        holder = await _insert_unionid(member_id, unionid, now)
        if holder == member_id:
            return BindResult("bound", member_id)
    if holder == member_id:
        return BindResult("held", member_id)
    if not fresh:
        return BindResult("conflict", holder, reason="both members have history")
    return await merge_fresh(member_id, holder, now)


async def _insert_unionid(member_id: int, unionid: str, now: datetime) -> int:
    try:
        await Identity.create(
            kind=UNIONID, app="", value=unionid, member_id=member_id, created_at=now
        )
    except IntegrityError:
        winner = await unionid_holder(unionid)
        if winner is None:  # the insert failed for another reason: let it be seen
            raise
        return winner
    return member_id


async def merge_fresh(fresh_id: int, survivor_id: int, now: datetime) -> BindResult:
    """Move a fresh member's identities to the survivor and mark it merged (one transaction)."""
    try:
        async with in_transaction():
            claimed = await Member.filter(id=fresh_id, status="active").update(
                status="merged", merged_into_id=survivor_id
            )
            if not claimed:
                raise _NotFresh("already merged or not active", "skipped")
            moved = await _check_fresh(fresh_id, survivor_id)
            await Identity.filter(id__in=moved).update(member_id=survivor_id)
            await MemberMerge.create(
                survivor_id=survivor_id,
                merged_id=fresh_id,
                moved={"identity": moved},
                actor=MERGE_ACTOR,
                created_at=now,
            )
    except _NotFresh as exc:
        return BindResult(exc.outcome, survivor_id, reason=str(exc))
    return BindResult("merged", survivor_id, moved)


async def _check_fresh(fresh_id: int, survivor_id: int) -> list[int]:
    if not await Member.filter(id=survivor_id, status="active").exists():
        raise _NotFresh("the unionid's holder is not active")
    if await PointsEntry.filter(member_id=fresh_id).exists():
        raise _NotFresh("the new member has ledger entries")
    ids = [int(row["id"]) for row in await Identity.filter(member_id=fresh_id).values("id")]
    if len(ids) != 1:
        raise _NotFresh("the new member has other identities")
    return ids
