"""Consent rows and the member's cached marketing opt-out, written together."""

from __future__ import annotations

from datetime import datetime

from tortoise.transactions import in_transaction

from storage.models import Consent, Member
from storage.timeutil import utc

MARKETING = "marketing"

__all__ = ["MARKETING", "record_marketing"]


async def record_marketing(
    member_id: int, granted: bool, *, channel: str, text_version: str, at: datetime
) -> bool | None:
    """Append a marketing Consent row and set ``Member.marketing_opt_out`` in one
    transaction (the member row locked); the opt-out before, or None (nothing written)
    when there is no such member."""
    async with in_transaction():
        before = (
            await Member.filter(id=member_id)
            .select_for_update()
            .values_list("marketing_opt_out", flat=True)
        )
        if not before:
            return None
        await Member.filter(id=member_id).update(marketing_opt_out=not granted)
        await Consent.create(
            member_id=member_id,
            purpose=MARKETING,
            granted=granted,
            channel=channel,
            text_version=text_version,
            at=utc(at),
        )
    return bool(before[0])
