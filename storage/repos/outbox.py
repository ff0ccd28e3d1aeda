"""OutboxMessage rows: enqueue idempotently, claim with a lease, settle each row.

On PostgreSQL a claim locks its rows with ``SELECT … FOR UPDATE SKIP LOCKED`` in a
transaction, so senders sharing the table take disjoint batches without waiting on each
other; on SQLite (one sender per database) a claim is a conditional update. A row turns
``sending`` (committed) just before its own API call, and a row still ``sending`` after
its lease lapsed belonged to a dead sender: it becomes ``unknown`` and is never re-sent.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise import connections
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from storage.models import OutboxMessage
from storage.timeutil import utc


@dataclass(frozen=True, slots=True)
class NewMessage:
    """What to send, to whom, over which channel."""

    idempotency_key: str
    channel: str
    account: str
    recipient: str
    payload: Mapping[str, Any]
    source: str
    member_id: int | None = None
    kind: str = "service"  # or "marketing" (the marketing cap counts these rows)
    group_key: str = ""  # rows sent as one platform task (WeCom add_msg_template)
    staff_userid: str = ""  # the WeCom staff member whose task carries the row


async def insert(
    message: NewMessage, due_at: datetime, status: str = "pending", reason: str = ""
) -> OutboxMessage:
    """Insert the row (IntegrityError when its key exists; the caller decides)."""
    return await OutboxMessage.create(
        idempotency_key=message.idempotency_key,
        channel=message.channel,
        account=message.account,
        recipient=message.recipient,
        member_id=message.member_id,
        source=message.source,
        kind=message.kind,
        group_key=message.group_key,
        staff_userid=message.staff_userid,
        payload=dict(message.payload),
        status=status,
        reason=reason[:255],
        due_at=due_at,
    )


async def enqueue(message: NewMessage, due_at: datetime) -> OutboxMessage:
    """Insert the row once; a second enqueue with the same key returns the first row."""
    try:
        return await insert(message, due_at)
    except IntegrityError:
        return await OutboxMessage.get(idempotency_key=message.idempotency_key)


# Earliest due first, then in order of enqueue: the order of the (status, due_at) index
# (SQLite's index ends with the rowid), so a claim reads its LIMIT rows off the index
# instead of sorting every due row by id (a 100,000-row backlog sorted for each batch).
CLAIM_ORDER = ("due_at", "id")


def _claimable(now: datetime) -> Q:
    now = utc(now)
    return Q(status="pending", due_at__lte=now) & (Q(claimed_by="") | Q(lease_until__lt=now))


async def claim(worker: str, now: datetime, lease: timedelta, limit: int) -> list[OutboxMessage]:
    """Claim up to ``limit`` due rows for this worker, earliest due first (rows whose lease
    lapsed included)."""
    if connections.get("default").capabilities.dialect == "postgres":
        return await _claim_skip_locked(worker, now, lease, limit)
    ids = (
        await OutboxMessage.filter(_claimable(now))
        .order_by(*CLAIM_ORDER)
        .limit(limit)
        .values_list("id", flat=True)
    )
    if not ids:
        return []
    await OutboxMessage.filter(_claimable(now), id__in=list(ids)).update(
        claimed_by=worker, lease_until=utc(now + lease)
    )
    return await OutboxMessage.filter(
        id__in=list(ids), claimed_by=worker, status="pending"
    ).order_by("id")


async def _claim_skip_locked(
    worker: str, now: datetime, lease: timedelta, limit: int
) -> list[OutboxMessage]:
    until = utc(now + lease)
    async with in_transaction() as tx:
        rows = (
            await OutboxMessage.filter(_claimable(now))
            .order_by(*CLAIM_ORDER)
            .limit(limit)
            .select_for_update(skip_locked=True)
            .using_db(tx)
        )
        if not rows:
            return []
        await (
            OutboxMessage.filter(id__in=[r.id for r in rows])
            .using_db(tx)
            .update(claimed_by=worker, lease_until=until)
        )
    for row in rows:
        row.claimed_by, row.lease_until = worker, until
    return list(rows)


# The two statements of every send, as plain SQL: the ORM's query building costs more
# than the statement itself, and a sender makes thousands a second.
_START = (
    "UPDATE outbox_message SET status = 'sending', lease_until = {}, attempts = attempts + 1"
    " WHERE id = {} AND status = 'pending' AND claimed_by = {}"
)
_SETTLE = (
    "UPDATE outbox_message SET status = {}, reason = {}, sent_at = {}, claimed_by = '',"
    " lease_until = NULL WHERE id = {} AND status = 'sending'"
)


@functools.cache
def _statement(template: str, dialect: str) -> str:
    count = template.count("{}")
    if dialect == "postgres":
        return template.format(*(f"${i}" for i in range(1, count + 1)))
    return template.format(*(["?"] * count))


async def _execute(template: str, values: list[Any]) -> int:
    conn = connections.get("default")
    changed, _ = await conn.execute_query(_statement(template, conn.capabilities.dialect), values)
    return int(changed)


async def start_sending(row: OutboxMessage, worker: str, now: datetime, lease: timedelta) -> bool:
    """pending → sending, committed before the call; False if we no longer own the row."""
    return await _execute(_START, [utc(now + lease), row.id, worker]) == 1


async def settle(
    row_id: int, status: str, reason: str = "", sent_at: datetime | None = None
) -> None:
    """Record how the call ended."""
    when = utc(sent_at) if sent_at else None
    await _execute(_SETTLE, [status, reason[:255], when, row_id])


# The same two statements for many rows at once (rows whose calls run side by side).
_START_MANY = (
    "UPDATE outbox_message SET status = 'sending', lease_until = {}, attempts = attempts + 1"
    " WHERE id {} AND status = 'pending' AND claimed_by = {} RETURNING id"
)
_SETTLE_MANY = (
    "UPDATE outbox_message SET status = {}, reason = {}, sent_at = {}, claimed_by = '',"
    " lease_until = NULL WHERE id {} AND status = 'sending'"
)


def _many(template: str, dialect: str, before: int, count: int) -> str:
    """``template`` with ``{}`` placeholders and the id list (``IN (…)`` / ``= ANY``)."""
    if dialect == "postgres":
        marks = [f"${i}" for i in range(1, template.count("{}") + 1)]
        marks[before] = f"= ANY(${before + 1}::bigint[])"
        return template.format(*marks)
    marks = ["?"] * template.count("{}")
    marks[before] = "IN (" + ", ".join(["?"] * count) + ")"
    return template.format(*marks)


def _values(dialect: str, head: list[Any], ids: Sequence[int], tail: list[Any]) -> list[Any]:
    return [*head, list(ids), *tail] if dialect == "postgres" else [*head, *ids, *tail]


async def start_many(ids: Sequence[int], worker: str, now: datetime, lease: timedelta) -> set[int]:
    """pending → sending for these rows in one statement; the ids this worker still owned.

    Each row's own call must follow this commit (a row is never called before it).
    """
    if not ids:
        return set()
    conn = connections.get("default")
    dialect = conn.capabilities.dialect
    query = _many(_START_MANY, dialect, 1, len(ids))
    rows = await conn.execute_query_dict(query, _values(dialect, [utc(now + lease)], ids, [worker]))
    return {int(r["id"]) for r in rows}


async def settle_rows(
    ids: Sequence[int], status: str, reason: str = "", sent_at: datetime | None = None
) -> int:
    """Record, in one statement, rows whose calls have all returned with this outcome."""
    if not ids:
        return 0
    conn = connections.get("default")
    dialect = conn.capabilities.dialect
    when = utc(sent_at) if sent_at else None
    query = _many(_SETTLE_MANY, dialect, 3, len(ids))
    changed, _ = await conn.execute_query(
        query, _values(dialect, [status, reason[:255], when], ids, [])
    )
    return int(changed)


async def retry_later(row_id: int, due_at: datetime, reason: str) -> None:
    """The call provably did not happen: back to pending, due later."""
    await OutboxMessage.filter(id=row_id, status="sending").update(
        status="pending", due_at=utc(due_at), reason=reason[:255], claimed_by="", lease_until=None
    )


async def mark_abandoned(now: datetime) -> int:
    """Rows left ``sending`` past their lease: a sender died mid-call; never re-send."""
    return await OutboxMessage.filter(status="sending", lease_until__lt=utc(now)).update(
        status="unknown", reason="sender died during the call", claimed_by="", lease_until=None
    )


async def release_claims(worker: str, ids: Sequence[int] | None = None) -> int:
    """This worker's claimed rows still ``pending`` go back to the pool at once.

    ``ids``: only among these (the batch just sent: found by primary key, where the
    worker alone would be found among every pending row of a backlog).
    """
    rows = OutboxMessage.filter(claimed_by=worker, status="pending")
    if ids is not None:
        rows = rows.filter(id__in=list(ids))
    return await rows.update(claimed_by="", lease_until=None)


async def release_uncalled(worker: str, ids: Sequence[int]) -> int:
    """Rows this worker claimed and never called go back to the pool, ``pending`` again
    even if ``sending`` (their start committed but its answer was lost: no call followed)."""
    rows = OutboxMessage.filter(id__in=list(ids), claimed_by=worker)
    return await rows.filter(status__in=["pending", "sending"]).update(
        status="pending", claimed_by="", lease_until=None
    )


async def release_group(group_key: str) -> int:
    """``held`` rows of a group become ``pending`` (the group is complete: send it)."""
    if not group_key:
        return 0
    return await OutboxMessage.filter(group_key=group_key, status="held").update(status="pending")


async def release_held_before(prefix: str, before: datetime) -> int:
    """``held`` rows of groups starting with ``prefix`` created before ``before`` → pending.

    A pass that died between writing its WeCom rows and releasing their group leaves
    them held; nothing else would ever send them.
    """
    return await OutboxMessage.filter(
        status="held", group_key__startswith=prefix, created_at__lt=utc(before)
    ).update(status="pending")


async def postpone_claimed(row_id: int, worker: str, due_at: datetime, reason: str) -> bool:
    """A row this worker claimed but will not send yet: pending again, due later."""
    changed = await OutboxMessage.filter(id=row_id, status="pending", claimed_by=worker).update(
        due_at=utc(due_at), reason=reason[:255], claimed_by="", lease_until=None
    )
    return changed == 1
