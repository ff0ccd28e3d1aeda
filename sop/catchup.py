"""Which fire times of a cron are due: walked from the last recorded one up to now.

A trigger never run starts at ``now - grace`` (a new SOP does not replay its history).
Times younger than ``grace`` run; older ones are recorded ``missed``. One walk returns at
most ``limit`` times; the next tick continues from the last one it recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

WALK_LIMIT = 500


@dataclass(slots=True)
class DueTimes:
    """Fire times to run, and those too old to run."""

    run: list[datetime] = field(default_factory=list)
    missed: list[datetime] = field(default_factory=list)


def cron_trigger(cron: str, tz: ZoneInfo) -> CronTrigger:
    """A five-field crontab in business time."""
    return CronTrigger.from_crontab(cron, timezone=tz)


def due_times(
    trigger: CronTrigger,
    last: datetime | None,
    now: datetime,
    grace: timedelta,
    limit: int = WALK_LIMIT,
) -> DueTimes:
    """The fire times after ``last`` (or from ``now - grace``) up to ``now``, split by age."""
    due = DueTimes()
    if last is None:
        nxt = trigger.get_next_fire_time(None, now - grace)
    else:
        nxt = trigger.get_next_fire_time(last, last)
    while nxt is not None and nxt <= now and len(due.run) + len(due.missed) < limit:
        (due.missed if now - nxt > grace else due.run).append(nxt)
        nxt = trigger.get_next_fire_time(nxt, nxt)
    return due
