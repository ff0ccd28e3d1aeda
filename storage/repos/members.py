"""Members and identities: find or create by identity, follow state, batched activity.

The unique key (kind, app, value) decides races: two deliveries creating the same
follower both try, one insert wins, the other reads the winner's member.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from storage.models import Identity, Member

_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud, typed by hand


def new_member_code(length: int = 8) -> str:
    """A public member code from a CSPRNG (used in referral scenes: ref_<code>)."""
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(length))


@dataclass(frozen=True, slots=True)
class MemberRow:
    """What the hot path needs about a member."""

    id: int
    code: str
    created: bool = False


async def find_by_identity(kind: str, app: str, value: str) -> MemberRow | None:
    """The active member holding an identity (one indexed query)."""
    row = await Identity.filter(kind=kind, app=app, value=value).values("member_id", "member__code")
    if not row:
        return None
    found = row[0]
    return MemberRow(int(found["member_id"]), str(found["member__code"]))


async def create_with_identity(
    kind: str, app: str, value: str, now: datetime, channel: str = ""
) -> MemberRow:
    """A new member with its first identity; a concurrent creator's member if it won."""
    try:
        async with in_transaction():
            member = await _insert_member(now, channel)
            await Identity.create(
                kind=kind, app=app, value=value, member_id=member.id, created_at=now
            )
            return MemberRow(member.id, member.code, created=True)
    except IntegrityError:
        existing = await find_by_identity(kind, app, value)
        if existing is None:
            raise
        return existing


async def _insert_member(now: datetime, channel: str) -> Member:
    for _ in range(5):
        try:
            async with in_transaction():
                return await Member.create(
                    code=new_member_code(), created_at=now, channel=channel, last_active_at=now
                )
        except IntegrityError:
            continue  # a code collision (1 in 32**8 per member): draw again
    raise RuntimeError("could not draw a unique member code")


async def set_followed(kind: str, app: str, value: str, followed: bool, now: datetime) -> None:
    """Record a follow or unfollow on the identity (nothing is ever deleted)."""
    if followed:
        await Identity.filter(kind=kind, app=app, value=value).update(
            followed=True, followed_at=now, last_event_at=now, cs_sent_since_event=0
        )
    else:
        await Identity.filter(kind=kind, app=app, value=value).update(
            followed=False, unfollowed_at=now
        )


async def member_summary(member_id: int) -> Member | None:
    """The member row (tier, growth, points) for replies."""
    return await Member.get_or_none(id=member_id)


async def apply_activity(
    messages: dict[tuple[str, str, str], datetime], active: dict[int, datetime]
) -> None:
    """Write batched activity: identities' last message time, members' last activity."""
    async with in_transaction():
        for (kind, app, value), at in messages.items():
            await Identity.filter(kind=kind, app=app, value=value).update(
                last_message_at=at, cs_sent_since_message=0
            )
        for member_id, at in active.items():
            await Member.filter(id=member_id, last_active_at__lt=at).update(last_active_at=at)
