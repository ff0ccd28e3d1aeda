"""Outbox rows settled together: WeCom group tasks (one add_msg_template per staff member).

A task's rows are the pending rows of one (channel, account, group_key, staff_userid); they
turn ``sending`` in one conditional update (committed before the one call), so a row is
in at most one task. Rows claimed by another live sender are left to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from tortoise.expressions import F, Q

from storage.models import OutboxMessage
from storage.timeutil import utc

AWAITING = "awaiting_staff"


def _free_for(worker: str, now: datetime) -> Q:
    return Q(claimed_by="") | Q(claimed_by=worker) | Q(lease_until__lt=utc(now))


async def group_candidates(
    row: OutboxMessage, worker: str, now: datetime, limit: int
) -> list[OutboxMessage]:
    """The due pending rows of ``row``'s group this worker may take, oldest first."""
    return (
        await OutboxMessage.filter(
            _free_for(worker, now),
            channel=row.channel,
            account=row.account,
            group_key=row.group_key,
            staff_userid=row.staff_userid,
            status="pending",
            due_at__lte=utc(now),
        )
        .order_by("id")
        .limit(limit)
    )


async def start_group(
    ids: Sequence[int], worker: str, now: datetime, lease: timedelta
) -> list[OutboxMessage]:
    """pending → sending for these rows in one update; returns the rows this worker won."""
    if not ids:
        return []
    await OutboxMessage.filter(_free_for(worker, now), id__in=list(ids), status="pending").update(
        status="sending",
        claimed_by=worker,
        lease_until=utc(now + lease),
        attempts=F("attempts") + 1,
    )
    return await OutboxMessage.filter(
        id__in=list(ids), status="sending", claimed_by=worker
    ).order_by("id")


async def settle_many(
    ids: Sequence[int], status: str, reason: str = "", sent_at: datetime | None = None
) -> int:
    """Record how the one call carrying these ``sending`` rows ended."""
    if not ids:
        return 0
    return await OutboxMessage.filter(id__in=list(ids), status="sending").update(
        status=status,
        reason=reason[:255],
        sent_at=utc(sent_at) if sent_at else None,
        claimed_by="",
        lease_until=None,
    )


async def retry_many(ids: Sequence[int], due_at: datetime, reason: str) -> int:
    """The call provably did not happen: these rows are pending again, due later."""
    if not ids:
        return 0
    return await OutboxMessage.filter(id__in=list(ids), status="sending").update(
        status="pending", due_at=utc(due_at), reason=reason[:255], claimed_by="", lease_until=None
    )


async def await_staff(ids: Sequence[int], external_ref: str) -> int:
    """The task exists: its rows wait for the staff member to send it."""
    if not ids:
        return 0
    return await OutboxMessage.filter(id__in=list(ids), status="sending").update(
        status=AWAITING, external_ref=external_ref[:128], claimed_by="", lease_until=None
    )


async def awaiting_tasks(channel: str) -> list[tuple[str, str]]:
    """(external_ref, staff_userid) of every task with rows still awaiting staff."""
    rows = (
        await OutboxMessage.filter(channel=channel, status=AWAITING)
        .distinct()
        .values_list("external_ref", "staff_userid")
    )
    return sorted({(str(ref), str(staff)) for ref, staff in rows})


async def awaiting_rows(channel: str, external_ref: str, staff_userid: str) -> dict[str, int]:
    """recipient → row id of one task's rows still awaiting staff."""
    rows = await OutboxMessage.filter(
        channel=channel, status=AWAITING, external_ref=external_ref, staff_userid=staff_userid
    ).values_list("recipient", "id")
    return {str(recipient): int(row_id) for recipient, row_id in rows}


async def finish_awaiting(
    ids: Sequence[int], status: str, reason: str = "", sent_at: datetime | None = None
) -> int:
    """awaiting_staff → sent or failed (the platform's send result said so)."""
    if not ids:
        return 0
    return await OutboxMessage.filter(id__in=list(ids), status=AWAITING).update(
        status=status, reason=reason[:255], sent_at=utc(sent_at) if sent_at else None
    )
