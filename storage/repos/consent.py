"""Consent rows and the member's cached marketing opt-out, written together."""

from __future__ import annotations

from datetime import datetime

from tortoise.transactions import in_transaction

from storage.models import Consent, Member
from storage.timeutil import utc

MARKETING = "marketing"

__all__ = ["MARKETING", "marketing_opted_out", "record_marketing"]


async def record_marketing(
    member_id: int, granted: bool, *, channel: str, text_version: str, at: datetime
) -> bool:
    """Append a marketing Consent row and set ``Member.marketing_opt_out`` in one
    transaction; False (and nothing written) when there is no such member."""
    async with in_transaction():
        updated = await Member.filter(id=member_id).update(marketing_opt_out=not granted)
        if not updated:
            return False
        await Consent.create(
            member_id=member_id,
            purpose=MARKETING,
            granted=granted,
            channel=channel,
            text_version=text_version,
            at=utc(at),
        )
    return True


async def marketing_opted_out(member_id: int) -> bool | None:
    """The member's cached opt-out (None when there is no such member)."""
    rows = await Member.filter(id=member_id).values_list("marketing_opt_out", flat=True)
    return bool(rows[0]) if rows else None
