"""Broadcast rows and the outbox rows of a broadcast (group ``bc:<id>``).

A state change is one conditional update (``WHERE state IN (…)``) with its AuditLog row
in the same transaction; pause, resume and cancel move the broadcast's outbox rows with
one update each (the sender only claims ``pending`` rows, and finishes those already
``sending``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from tortoise.functions import Count

from storage.models import Broadcast, MassJob, OutboxMessage
from storage.repos import audit_log
from storage.timeutil import utc

# Outbox statuses after which a row of a broadcast needs nothing more.
FINAL = ("sent", "failed", "unknown", "submitted", "unreachable", "skipped", "cancelled")
OPEN = ("pending", "held", "sending", "awaiting_staff")


def group_key(broadcast_id: int) -> str:
    """The outbox group of a broadcast's rows."""
    return f"bc:{broadcast_id}"


async def create(values: dict[str, Any], actor: str, now: datetime) -> Broadcast:
    """A new draft broadcast, audited."""
    async with audit_log.atomic():
        row = await Broadcast.create(
            **values, state="draft", created_by=actor, created_at=utc(now), updated_at=utc(now)
        )
        detail = {"channel": row.channel, "kind": row.kind, "template": row.template}
        await audit_log.record(actor, "broadcast.create", f"broadcast:{row.id}", detail, now)
    return row


async def transition(
    broadcast_id: int,
    from_states: Iterable[str],
    to_state: str,
    actor: str,
    now: datetime,
    **values: Any,
) -> bool:
    """``state`` → ``to_state`` when it is one of ``from_states``; False when it was not."""
    sources = list(from_states)
    dated = {k: utc(v) if isinstance(v, datetime) else v for k, v in values.items()}
    async with audit_log.atomic():
        changed = await Broadcast.filter(id=broadcast_id, state__in=sources).update(
            state=to_state, updated_at=utc(now), **dated
        )
        if changed != 1:
            return False
        detail = {"to": to_state, "from": sources, **{k: str(v) for k, v in values.items()}}
        await audit_log.record(
            actor, f"broadcast.{to_state}", f"broadcast:{broadcast_id}", detail, now
        )
    return True


async def touch(broadcast_id: int, now: datetime) -> None:
    """The enqueue's heartbeat: ``updated_at`` = now."""
    await Broadcast.filter(id=broadcast_id).update(updated_at=utc(now))


async def take_beat(b: Broadcast, now: datetime) -> bool:
    """Take over a stopped enqueue: True for the one caller whose conditional update
    moved ``updated_at`` from the value it read."""
    return bool(
        await Broadcast.filter(id=b.id, updated_at=b.updated_at).update(updated_at=utc(now))
    )


async def save_reach(broadcast_id: int, reach: dict[str, Any]) -> None:
    """Store the expected reach."""
    await Broadcast.filter(id=broadcast_id).update(reach=reach)


async def hold(broadcast_id: int) -> int:
    """Pending rows → held (paused)."""
    return await OutboxMessage.filter(group_key=group_key(broadcast_id), status="pending").update(
        status="held"
    )


async def release(broadcast_id: int) -> int:
    """Held rows → pending (resumed, or enqueueing ended)."""
    return await OutboxMessage.filter(group_key=group_key(broadcast_id), status="held").update(
        status="pending"
    )


async def cancel_rows(broadcast_id: int) -> int:
    """Pending and held rows → cancelled (rows already sent stay sent)."""
    return await OutboxMessage.filter(
        group_key=group_key(broadcast_id), status__in=["pending", "held"]
    ).update(status="cancelled", reason="cancelled", claimed_by="", lease_until=None)


async def open_rows(broadcast_id: int) -> int:
    """Rows of the broadcast not final yet."""
    return await OutboxMessage.filter(group_key=group_key(broadcast_id), status__in=OPEN).count()


async def row_counts(broadcast_id: int) -> list[dict[str, Any]]:
    """(channel, status, reason, staff_userid, n) of the broadcast's rows."""
    rows = (
        await OutboxMessage.filter(group_key=group_key(broadcast_id))
        .annotate(n=Count("id"))
        .group_by("channel", "status", "reason", "staff_userid")
        .values("channel", "status", "reason", "staff_userid", "n")
    )
    return [dict(r) for r in rows]


async def mass_totals(broadcast_id: int) -> dict[str, int]:
    """The MASSSENDJOBFINISH totals of the broadcast's mass-send calls, summed."""
    jobs = await MassJob.filter(broadcast_id=broadcast_id).values(
        "recipients", "total_count", "filter_count", "sent_count", "error_count", "finished_at"
    )
    keys = ("recipients", "total_count", "filter_count", "sent_count", "error_count")
    totals = {k: sum(int(j[k]) for j in jobs) for k in keys}
    totals["jobs"] = len(jobs)
    totals["finished"] = sum(1 for j in jobs if j["finished_at"] is not None)
    return totals
