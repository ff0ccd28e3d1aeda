"""What the notify service reads and writes: OA identities, window slots, notice rows.

A customer-service slot is claimed by one conditional UPDATE on the identity (both
counters +1, as the platform counts a message against both windows), in the same
transaction as the notice's outbox row: a duplicate notice (its key exists) rolls the
claim back. The window bounds and quotas are the caller's (platform rules, not storage).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Q
from tortoise.transactions import in_transaction

from storage.models import Identity, OutboxMessage, StaffCustomer
from storage.models.members import OA_OPENID
from storage.repos.outbox import NewMessage, enqueue, insert
from storage.timeutil import utc

UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class OaIdentity:
    """A member's openid under one Official Account (by AppID)."""

    id: int
    app: str
    openid: str
    last_message_at: datetime | None


@dataclass(frozen=True, slots=True)
class Window:
    """A customer-service window: opened after ``since``, ``quota`` messages in it."""

    since: datetime
    quota: int


def _following() -> Q:
    # followers, and members seen only by their messages (followed before the bot knew)
    return Q(followed=True) | Q(unfollowed_at__isnull=True)


async def oa_identities(member_id: int, apps: Sequence[str]) -> list[OaIdentity]:
    """The member's followed openids under these AppIDs, latest message first."""
    rows = await Identity.filter(
        _following(), member_id=member_id, kind=OA_OPENID, app__in=list(apps)
    ).values_list("id", "app", "value", "last_message_at")
    found = [OaIdentity(int(i), str(a), str(v), m) for i, a, v, m in rows]
    return sorted(found, key=lambda x: (x.last_message_at is None, -(_ts(x.last_message_at))))


def _ts(moment: datetime | None) -> float:
    return moment.timestamp() if moment is not None else 0.0


def _in_window(message: Window, event: Window) -> Q:
    by_message = Q(last_message_at__gt=utc(message.since)) & Q(
        cs_sent_since_message__lt=message.quota
    )
    by_event = Q(last_event_at__gt=utc(event.since)) & Q(cs_sent_since_event__lt=event.quota)
    return by_message | by_event


async def enqueue_in_window(
    identity_id: int, message: Window, event: Window, row: NewMessage, now: datetime
) -> OutboxMessage | None:
    """Claim one customer-service slot and enqueue the row; None if no slot is free.

    Raises IntegrityError (claim rolled back) when a row with the key exists.
    """
    async with in_transaction():
        claimed = await Identity.filter(
            _in_window(message, event), _following(), id=identity_id
        ).update(
            cs_sent_since_message=F("cs_sent_since_message") + 1,
            cs_sent_since_event=F("cs_sent_since_event") + 1,
        )
        if claimed != 1:
            return None
        return await _create(row, now)


async def _create(
    row: NewMessage, now: datetime, status: str = "pending", reason: str = ""
) -> OutboxMessage:
    return await insert(row, now, status, reason)


async def templates_between(account: str, start: datetime, end: datetime) -> int:
    """Template-message rows of an account due in [start, end) (the day's quota use)."""
    return await OutboxMessage.filter(
        channel="oa_template", account=account, due_at__gte=utc(start), due_at__lt=utc(end)
    ).count()


async def enqueue_template(row: NewMessage, now: datetime) -> OutboxMessage:
    """Enqueue a template-message row (idempotent by key)."""
    return await enqueue(row, now)


async def active_staff_customer(member_id: int, corp: str) -> tuple[str, str] | None:
    """(staff userid, external userid) of the member's most recent active relation."""
    found = (
        await StaffCustomer.filter(member_id=member_id, corp=corp, status="active")
        .order_by("-created_at", "-id")
        .limit(1)
        .values_list("staff_userid", "external_userid")
    )
    if not found:
        return None
    staff, external = found[0]
    return str(staff), str(external)


async def enqueue_status(row: NewMessage, now: datetime, status: str) -> OutboxMessage:
    """Insert a row in ``status`` (``held`` rows wait for their group's release)."""
    return await _create(row, now, status=status)


async def record_unreachable(row: NewMessage, now: datetime, reason: str) -> OutboxMessage:
    """A notice no channel could take: a row the sender never claims, with the reason."""
    return await _create(row, now, status=UNREACHABLE, reason=reason)


async def find_message(key: str) -> OutboxMessage | None:
    """The outbox row written under a key."""
    return await OutboxMessage.get_or_none(idempotency_key=key)


async def enqueue_reply_counted(
    identity: tuple[str, str, str], row: NewMessage, now: datetime
) -> OutboxMessage | None:
    """Enqueue a late reply and count it against the identity's customer-service windows.

    A late reply answers the member's own message, so its window is open; it is counted
    all the same (one transaction with the row), or the next notice would claim a slot
    WeChat no longer grants (45047). A repeat with the same key counts nothing. None, and
    no row, when the identity is gone: the member erased it (注销) while the handler ran,
    and an outbox row would keep the openid the erasure removed.
    """
    existing = await find_message(row.idempotency_key)
    if existing is not None:
        return existing
    kind, app, value = identity
    try:
        async with in_transaction():
            counted = await Identity.filter(kind=kind, app=app, value=value).update(
                cs_sent_since_message=F("cs_sent_since_message") + 1,
                cs_sent_since_event=F("cs_sent_since_event") + 1,
            )
            if not counted:
                return None
            return await _create(row, now)
    except IntegrityError:
        return await OutboxMessage.get(idempotency_key=row.idempotency_key)
