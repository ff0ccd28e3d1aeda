"""Members and identities: find or create by identity, follow state, batched activity.

The unique key (kind, app, value) decides races: two deliveries creating the same
follower both try, one insert wins, the other reads the winner's member.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from tortoise import connections
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from storage.models import Identity, Member
from storage.timeutil import utc

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
    """A new member with its first identity; a concurrent creator's member if it won.

    One transaction, two inserts. An IntegrityError means either another instance
    created this identity first (read theirs) or the random code collided (draw again).
    """
    for _ in range(5):
        code = new_member_code()
        try:
            async with in_transaction():
                member = await Member.create(
                    code=code, created_at=now, channel=channel, last_active_at=now
                )
                await Identity.create(
                    kind=kind, app=app, value=value, member_id=member.id, created_at=now
                )
                return MemberRow(member.id, code, created=True)
        except IntegrityError:
            existing = await find_by_identity(kind, app, value)
            if existing is not None:
                return existing
    raise RuntimeError("could not draw a unique member code")


async def set_followed(kind: str, app: str, value: str, followed: bool, now: datetime) -> bool:
    """Record a follow or unfollow (nothing is ever deleted); True if it followed before."""
    identity = Identity.filter(kind=kind, app=app, value=value)
    now = utc(now)
    before = await identity.values_list("followed_at", flat=True)
    if followed:
        await identity.update(
            followed=True, followed_at=now, last_event_at=now, cs_sent_since_event=0
        )
    else:
        await identity.update(followed=False, unfollowed_at=now)
    return any(at is not None for at in before)


async def member_summary(member_id: int) -> Member | None:
    """The member row (tier, growth, points) for replies."""
    return await Member.get_or_none(id=member_id)


_TOUCH_IDENTITY = (
    "UPDATE identity SET last_message_at = {0}, cs_sent_since_message = 0 "
    "WHERE kind = {1} AND app = {2} AND value = {3}"
)
_TOUCH_EVENT = (
    "UPDATE identity SET last_event_at = {0}, cs_sent_since_event = 0 "
    "WHERE kind = {1} AND app = {2} AND value = {3}"
)
_TOUCH_MEMBER = (
    "UPDATE member SET last_active_at = {0} "
    "WHERE id = {1} AND (last_active_at IS NULL OR last_active_at < {0})"
)


def _sql(template: str, postgres: bool) -> str:
    marks = [f"${i}" if postgres else "?" for i in range(1, 5)]
    if not postgres:  # sqlite binds positionally: repeat the value where {0} repeats
        return template.replace("{0}", "?").format(*marks)
    return template.format(*marks)


async def apply_activity(
    messages: dict[tuple[str, str, str], datetime],
    active: dict[int, datetime],
    events: dict[tuple[str, str, str], datetime] | None = None,
) -> None:
    """Write batched activity: identities' last message and scan/click times, last activity.

    One executemany statement per kind of row per flush; per-row ORM updates cost the
    event loop more than the database work (bench/callbacks.py). Times are bound in UTC, as the ORM
    stores them, so SQLite's text comparison stays correct.
    """
    conn = connections.get("default")
    postgres = conn.capabilities.dialect == "postgres"
    async with in_transaction() as tx:
        if messages:
            rows = [[utc(at), *identity] for identity, at in messages.items()]
            await tx.execute_many(_sql(_TOUCH_IDENTITY, postgres), rows)
        if events:
            rows = [[utc(at), *identity] for identity, at in events.items()]
            await tx.execute_many(_sql(_TOUCH_EVENT, postgres), rows)
        if active:
            member_rows: list[list[object]] = [
                [utc, member_id] if postgres else [utc, member_id, utc]
                for member_id, utc in ((m, utc(at)) for m, at in active.items())
            ]
            await tx.execute_many(_sql(_TOUCH_MEMBER, postgres), member_rows)
