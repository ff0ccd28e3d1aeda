"""Touchpoint rows: claim due ones with a lease, mark grants once, settle each row.

A claim is a conditional update of ``lease_until``/``attempts`` on rows still
``pending``, due, and not leased (or whose lease lapsed): two dispatchers never own one
row at the same time. On PostgreSQL one ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP
LOCKED)`` claims a batch; on SQLite (one dispatcher) each row is claimed in turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise import connections
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Q

from storage.models import Identity, Touchpoint
from storage.models.members import OA_OPENID
from storage.repos.notify import Window
from storage.timeutil import utc

PENDING, DONE, SKIPPED = "pending", "done", "skipped"


@dataclass(frozen=True, slots=True)
class Scope:
    """Which due rows a pass may claim (None: any SOP, any run)."""

    sop_id: str | None = None
    run_id: int | None = None


def _claimable(now: datetime, scope: Scope) -> Q:
    now = utc(now)
    query = Q(status=PENDING, due_at__lte=now) & (Q(lease_until=None) | Q(lease_until__lt=now))
    if scope.sop_id is not None:
        query &= Q(sop_id=scope.sop_id)
    if scope.run_id is not None:
        query &= Q(run_id=scope.run_id)
    return query


_PG_CLAIM = (
    "UPDATE touchpoint SET lease_until = $1, attempts = attempts + 1 WHERE id IN ("
    "SELECT id FROM touchpoint WHERE status = 'pending' AND due_at <= $2 "
    "AND (lease_until IS NULL OR lease_until < $2){scope} "
    "ORDER BY due_at, id LIMIT {limit} FOR UPDATE SKIP LOCKED) RETURNING id"
)


async def claim(now: datetime, until: datetime, limit: int, scope: Scope) -> list[Touchpoint]:
    """Lease up to ``limit`` due pending rows until ``until``; the rows this call owns."""
    conn = connections.get("default")
    if conn.capabilities.dialect == "postgres":
        ids = await _claim_postgres(conn, now, until, limit, scope)
    else:
        ids = await _claim_each(now, until, limit, scope)
    if not ids:
        return []
    return await Touchpoint.filter(id__in=ids).order_by("due_at", "id")


async def _claim_postgres(
    conn: Any, now: datetime, until: datetime, limit: int, scope: Scope
) -> list[int]:
    values: list[Any] = [utc(until), utc(now)]
    extra = ""
    if scope.sop_id is not None:
        values.append(scope.sop_id)
        extra += f" AND sop_id = ${len(values)}"
    if scope.run_id is not None:
        values.append(scope.run_id)
        extra += f" AND run_id = ${len(values)}"
    sql = _PG_CLAIM.format(scope=extra, limit=int(limit))
    rows = await conn.execute_query_dict(sql, values)
    return [int(r["id"]) for r in rows]


async def _claim_each(now: datetime, until: datetime, limit: int, scope: Scope) -> list[int]:
    rows = (
        await Touchpoint.filter(_claimable(now, scope))
        .order_by("due_at", "id")
        .limit(limit)
        .values("id")
    )
    candidates = [int(r["id"]) for r in rows]
    owned: list[int] = []
    for row_id in candidates:
        changed = await Touchpoint.filter(_claimable(now, scope), id=row_id).update(
            lease_until=utc(until), attempts=F("attempts") + 1
        )
        if changed == 1:
            owned.append(row_id)
    return owned


async def mark_granted(row_id: int) -> bool:
    """``granted`` false → true (in the caller's transaction); False if it was true."""
    return await Touchpoint.filter(id=row_id, granted=False).update(granted=True) == 1


async def finish(
    row_id: int, status: str, outcome: str, now: datetime, outbox_id: int | None = None
) -> None:
    """Close the row: ``done`` or ``skipped`` with its outcome (and the outbox row)."""
    await Touchpoint.filter(id=row_id, status=PENDING).update(
        status=status,
        outcome=outcome[:255],
        outbox_id=outbox_id,
        lease_until=None,
        done_at=utc(now),
    )


GRANT_NOTE = "granted "


async def defer(row_id: int, due_at: datetime, outcome: str) -> None:
    """Leave the row pending, due later (quiet hours), its lease dropped.

    A note of what was granted (``granted coupon CODE``) stays at the front of the
    outcome, so the message sent after the deferral still names the coupon.
    """
    current = await Touchpoint.filter(id=row_id).values_list("outcome", flat=True)
    kept = str(current[0]) if current else ""
    if kept.startswith(GRANT_NOTE):
        outcome = f"{kept.split(' | ')[0]} | {outcome}"
    await Touchpoint.filter(id=row_id, status=PENDING).update(
        due_at=utc(due_at), outcome=outcome[:255], lease_until=None
    )


async def insert_once(
    sop_id: str, member_id: int, occurrence: str, due_at: datetime, now: datetime
) -> bool:
    """Insert a pending row; False when (sop, member, occurrence) exists already."""
    exists = await Touchpoint.filter(
        sop_id=sop_id, member_id=member_id, occurrence=occurrence
    ).exists()
    if exists:
        return False
    try:
        await Touchpoint.create(
            sop_id=sop_id,
            member_id=member_id,
            occurrence=occurrence[:96],
            status=PENDING,
            due_at=utc(due_at),
            created_at=utc(now),
        )
    except IntegrityError:
        return False
    return True


async def oa_window_open(
    member_id: int, apps: Sequence[str], message: Window, event: Window
) -> bool:
    """Has the member a followed OA identity (of these AppIDs) whose customer-service
    window is open: wrote since ``message.since``, or subscribed/scanned/clicked since
    ``event.since``, with the window's quota not used up? (Read only: nothing claimed.)"""
    if not apps:
        return False
    following = Q(followed=True) | Q(unfollowed_at__isnull=True)
    by_message = Q(last_message_at__gt=utc(message.since)) & Q(
        cs_sent_since_message__lt=message.quota
    )
    by_event = Q(last_event_at__gt=utc(event.since)) & Q(cs_sent_since_event__lt=event.quota)
    return await Identity.filter(
        following, by_message | by_event, member_id=member_id, kind=OA_OPENID, app__in=list(apps)
    ).exists()
