"""Marketing consent (PIPL): 退订 opts a member out, 订阅 back in; every change is a row.

The member's ``marketing_opt_out`` is a cache of the latest marketing Consent row, written
in the same transaction; audiences read it (storage/audience.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.repos import consent as repo

CHAT = "oa_chat"

__all__ = ["CHAT", "ConsentState", "opt_in", "opt_out"]


@dataclass(frozen=True, slots=True)
class ConsentState:
    """The member's marketing state after the change, and whether it changed."""

    opted_out: bool
    changed: bool


async def opt_out(
    member_id: int, channel: str, text_version: str, *, now: datetime
) -> ConsentState:
    """Withdraw marketing consent (a row even when already out: every request is recorded)."""
    return await _record(member_id, False, channel, text_version, now)


async def opt_in(member_id: int, channel: str, text_version: str, *, now: datetime) -> ConsentState:
    """Grant marketing consent again."""
    return await _record(member_id, True, channel, text_version, now)


async def _record(
    member_id: int, granted: bool, channel: str, text_version: str, now: datetime
) -> ConsentState:
    before = await repo.record_marketing(
        member_id, granted, channel=channel, text_version=text_version, at=now
    )
    if before is None:
        raise LookupError(f"no member {member_id}")
    return ConsentState(opted_out=not granted, changed=before != (not granted))
