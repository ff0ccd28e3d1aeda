"""Referrals: who referred a member (set once), the referrer by code, ledger history."""

from __future__ import annotations

from dataclasses import dataclass

from storage.models import Member, PointsEntry


@dataclass(frozen=True, slots=True)
class Newcomer:
    """What decides whether a follower is a genuinely new member."""

    has_ledger: bool
    referred_by_id: int | None


async def active_member_by_code(code: str) -> int | None:
    """The id of the active member with this public code."""
    rows = await Member.filter(code=code, status="active").values("id")
    return int(rows[0]["id"]) if rows else None


async def newcomer(member_id: int) -> Newcomer:
    """The member's ledger history and referrer."""
    rows = await Member.filter(id=member_id).values("referred_by_id")
    has_ledger = await PointsEntry.filter(member_id=member_id).exists()
    referrer = rows[0]["referred_by_id"] if rows else None
    return Newcomer(has_ledger, int(referrer) if referrer is not None else None)


async def set_referrer(member_id: int, referrer_id: int) -> bool:
    """Record the referrer unless the member has one already (first one wins)."""
    updated = await Member.filter(id=member_id, referred_by_id=None, status="active").update(
        referred_by_id=referrer_id
    )
    return updated > 0
