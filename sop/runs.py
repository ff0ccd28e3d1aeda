"""SopRun rows: one per SOP and fire time (the unique key makes a tick run once)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tortoise.exceptions import IntegrityError

from storage.models import SopRun
from storage.timeutil import utc

RUNNING, DONE, FAILED, MISSED = "running", "done", "failed", "missed"
CRON, CLI = "cron", "cli"


async def begin(
    sop_id: str, fire_time: datetime, runner: str, now: datetime, trigger: str = CRON
) -> SopRun | None:
    """Record that ``runner`` runs this fire time; None when it was recorded before."""
    try:
        return await SopRun.create(
            sop_id=sop_id,
            fire_time=utc(fire_time),
            status=RUNNING,
            trigger=trigger,
            runner=runner[:96],
            started_at=utc(now),
        )
    except IntegrityError:
        return None


async def record_missed(sop_id: str, fire_time: datetime, now: datetime, note: str) -> bool:
    """Record a fire time too old to run; False when the time was recorded before."""
    try:
        await SopRun.create(
            sop_id=sop_id,
            fire_time=utc(fire_time),
            status=MISSED,
            note=note[:255],
            started_at=utc(now),
            finished_at=utc(now),
        )
    except IntegrityError:
        return False
    return True


async def finish(
    run_id: int, status: str, counts: dict[str, Any], now: datetime, note: str = ""
) -> None:
    """Close a run with its tallies."""
    await SopRun.filter(id=run_id).update(
        status=status, counts=counts, note=note[:255], finished_at=utc(now)
    )


async def adopt(run: SopRun, runner: str) -> bool:
    """A new leader takes over a run the previous leader left ``running``: a compare-and-
    set on the runner it read, so of two schedulers adopting at once one wins."""
    runners = list({run.runner, runner[:96]})  # the same adopter may adopt again
    changed = await SopRun.filter(id=run.id, status=RUNNING, runner__in=runners).update(
        runner=runner[:96]
    )
    return changed == 1


async def unfinished(sop_id: str | None = None) -> list[SopRun]:
    """Runs still ``running`` (their runner may have died), oldest first."""
    query = SopRun.filter(status=RUNNING)
    if sop_id is not None:
        query = query.filter(sop_id=sop_id)
    return await query.order_by("fire_time")


async def last_fire_time(sop_id: str) -> datetime | None:
    """The latest scheduled fire time recorded for a SOP (run, running or missed).

    Manual runs (``sop run --at``, trigger ``cli``) do not count: a run asked for ahead
    of time must not make the scheduler skip the fire times before it.
    """
    row = await SopRun.filter(sop_id=sop_id, trigger=CRON).order_by("-fire_time").first()
    return row.fire_time if row is not None else None


async def get(sop_id: str, fire_time: datetime) -> SopRun | None:
    """The run of one fire time."""
    return await SopRun.get_or_none(sop_id=sop_id, fire_time=utc(fire_time))


async def history(sop_id: str, limit: int = 30) -> list[SopRun]:
    """The latest runs of a SOP, newest first."""
    return await SopRun.filter(sop_id=sop_id).order_by("-fire_time").limit(limit)


async def failed_since(since: datetime, attempts: int) -> list[SopRun]:
    """Scheduled runs that failed at a fire time after ``since`` and were tried fewer than
    ``attempts`` times (counts["attempts"]), oldest first."""
    rows = await SopRun.filter(status=FAILED, trigger=CRON, fire_time__gte=utc(since)).order_by(
        "fire_time"
    )
    return [r for r in rows if int((r.counts or {}).get("attempts", 1)) < attempts]


async def retry(run_id: int, runner: str) -> bool:
    """A failed run goes back to ``running`` for another attempt (False: someone else)."""
    changed = await SopRun.filter(id=run_id, status=FAILED).update(
        status=RUNNING, runner=runner[:96], finished_at=None
    )
    return changed == 1
