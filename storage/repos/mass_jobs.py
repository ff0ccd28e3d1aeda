"""OA mass-send jobs (MassJob) and the outbox rows one job carries.

A job's rows are pending ``oa_mass`` rows of one (account, group_key); they turn
``sending`` in one conditional update that also writes the job's ``clientmsgid`` into
``external_ref``, committed before the one call. Rows that go back ``pending`` (a rate
code, an unknown outcome) keep that ``clientmsgid``, so their retry is the same job: the
platform answers a repeated ``clientmsgid`` with the first job (45065), never a second.
Once submitted, ``external_ref`` holds the platform's ``msg_id``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Q

from storage.models import MassJob, OutboxMessage
from storage.timeutil import utc

CHANNEL = "oa_mass"
SUBMITTED = "submitted"


def _free_for(worker: str, now: datetime) -> Q:
    return Q(claimed_by="") | Q(claimed_by=worker) | Q(lease_until__lt=utc(now))


def _due(row: OutboxMessage, worker: str, now: datetime) -> Q:
    return _free_for(worker, now) & Q(
        channel=CHANNEL,
        account=row.account,
        group_key=row.group_key,
        status="pending",
        due_at__lte=utc(now),
    )


async def retry_candidates(row: OutboxMessage, worker: str, now: datetime) -> list[OutboxMessage]:
    """Due rows of ``row``'s group already given a job (a retry): one job's rows, by id."""
    first = (
        await OutboxMessage.filter(_due(row, worker, now))
        .exclude(external_ref="")
        .order_by("id")
        .first()
    )
    if first is None:
        return []
    return (
        await OutboxMessage.filter(_due(row, worker, now), external_ref=first.external_ref)
        .order_by("id")
        .all()
    )


async def fresh_candidates(
    row: OutboxMessage, worker: str, now: datetime, limit: int
) -> list[OutboxMessage]:
    """Due rows of ``row``'s group not yet in any job, oldest first, up to ``limit``."""
    return (
        await OutboxMessage.filter(_due(row, worker, now), external_ref="")
        .order_by("id")
        .limit(limit)
    )


async def job_for(broadcast_id: int, account: str, clientmsgid: str, now: datetime) -> MassJob:
    """The job of this ``clientmsgid``, created on first use (a retry reuses it)."""
    found = await MassJob.get_or_none(clientmsgid=clientmsgid)
    if found is not None:
        return found
    try:
        return await MassJob.create(
            broadcast_id=broadcast_id, account=account, clientmsgid=clientmsgid, created_at=now
        )
    except IntegrityError:
        return await MassJob.get(clientmsgid=clientmsgid)


async def start_job(
    ids: Sequence[int], clientmsgid: str, worker: str, now: datetime, lease: timedelta
) -> list[OutboxMessage]:
    """pending → sending (external_ref = clientmsgid) in one update; the rows this worker won."""
    if not ids:
        return []
    await OutboxMessage.filter(_free_for(worker, now), id__in=list(ids), status="pending").update(
        status="sending",
        external_ref=clientmsgid,
        claimed_by=worker,
        lease_until=utc(now + lease),
        attempts=F("attempts") + 1,
    )
    return (
        await OutboxMessage.filter(id__in=list(ids), status="sending", claimed_by=worker)
        .order_by("id")
        .all()
    )


async def mark_sending(job: MassJob, recipients: int) -> None:
    """The job's call is about to be made for this many rows."""
    await MassJob.filter(id=job.id).update(recipients=recipients, status="sending")


async def submitted(job: MassJob, ids: Sequence[int], msg_id: str) -> int:
    """The platform accepted the job: its rows are ``submitted`` with external_ref = msg_id."""
    await MassJob.filter(id=job.id).update(msg_id=msg_id[:64], status=SUBMITTED)
    if not ids:
        return 0
    return await OutboxMessage.filter(id__in=list(ids), status="sending").update(
        status=SUBMITTED, external_ref=msg_id[:128], reason="", claimed_by="", lease_until=None
    )


async def job_ended(job: MassJob, status: str) -> None:
    """The job will not be submitted now (its rows failed, or wait for a retry)."""
    await MassJob.filter(id=job.id).exclude(status=SUBMITTED).update(status=status[:16])


@dataclass(frozen=True, slots=True)
class Totals:
    """What MASSSENDJOBFINISH reports for one job."""

    status: str
    total: int
    filtered: int
    sent: int
    errors: int


async def record_finish(msg_id: str, totals: Totals, now: datetime) -> str:
    """Store a job's reported totals once: ``recorded``, ``repeat`` or ``unknown``."""
    changed = await MassJob.filter(msg_id=msg_id, finished_at=None).update(
        status=totals.status[:16],
        total_count=totals.total,
        filter_count=totals.filtered,
        sent_count=totals.sent,
        error_count=totals.errors,
        finished_at=utc(now),
    )
    if changed:
        return "recorded"
    return "repeat" if await MassJob.filter(msg_id=msg_id).exists() else "unknown"
