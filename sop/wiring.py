"""The scheduler in the app: a ``cleanup_ctx`` that starts it on start-up and stops it.

The leadership is a Redis lease when ``[redis] url`` is set (every process of the
deployment competes; one fires), else in-process (the embedded default leads alone). The
catch-up tick runs as a task at start-up, so callbacks are answered while it runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from sop.api import SopFirer
from sop.jobs import daily_jobs
from sop.leader import Leadership, LocalLeadership, RedisLeadership
from sop.schedule import SopScheduler

if TYPE_CHECKING:
    from bot.context import Services

SCHEDULER = web.AppKey("sop_scheduler", SopScheduler)
SchedulerCtx = Callable[[web.Application], AsyncIterator[None]]


def make_leadership(services: Services) -> Leadership:
    """Redis lease when Redis is configured, else the in-process leader."""
    lease = services.settings.sop.lease_seconds
    url = services.settings.redis.url
    if url:
        return RedisLeadership.from_url(url, services.keys.sop_leader(lease))
    return LocalLeadership(lease)


def make_scheduler(services: Services, firer: SopFirer | None) -> SopScheduler:
    """The scheduler over the daily jobs and, when given, the SOP engine's cron rules."""
    return SopScheduler(firer, services, make_leadership(services), daily_jobs(services))


def scheduler_ctx(services_key: web.AppKey[Services], firer: SopFirer | None) -> SchedulerCtx:
    """A cleanup_ctx running the scheduler (found under ``SCHEDULER``) while the app runs."""

    async def _scheduler(app: web.Application) -> AsyncIterator[None]:
        scheduler = make_scheduler(app[services_key], firer)
        app[SCHEDULER] = scheduler
        await scheduler.start()
        yield
        await scheduler.stop()
        if isinstance(scheduler.leadership, RedisLeadership):
            await scheduler.leadership.close()

    return _scheduler
