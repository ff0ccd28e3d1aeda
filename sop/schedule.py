"""``SopScheduler``: APScheduler wakes the leader; every wake-up is one idempotent tick.

APScheduler 3.x (``AsyncIOScheduler`` in business time) holds one cron job per cron SOP
and per daily job, which only wake the process at fire times, an interval job that ticks
(every ``tick_seconds``), and one that keeps the lease (every third of it). What runs is
decided by :meth:`SopScheduler.tick` from the database alone: each fire time is a
``SopRun`` row (unique SOP id + fire time), so two processes that both think they lead
still run it once, and a restart or a takeover catches up from the last recorded fire time
(see :mod:`sop.catchup`). On start and on every takeover the tick first adopts and resumes
the runs a dead leader left ``running``. "Now" is the injected business clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from sop import runs
from sop.api import SopFirer
from sop.catchup import cron_trigger, due_times
from sop.jobs import DailyJob
from sop.leader import Leadership
from storage.models import SopRun

if TYPE_CHECKING:
    from bot.context import Services

log = logging.getLogger("sop.schedule")
TICK_SECONDS = 30.0


RETRIES = 3  # attempts of a failed SOP run, within the catch-up grace


@dataclass(slots=True)
class TickReport:
    """What one tick did (nothing when this process is not the leader)."""

    leader: bool
    fired: list[tuple[str, datetime]] = field(default_factory=list)
    missed: list[tuple[str, datetime]] = field(default_factory=list)
    resumed: list[int] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    dispatched: int = 0
    broadcasts: list[int] = field(default_factory=list)  # started this tick


class SopScheduler:
    """Runs cron SOPs (through the firer) and the daily jobs, on the leader only."""

    def __init__(
        self,
        firer: SopFirer | None,
        services: Services,
        leadership: Leadership,
        jobs: Sequence[DailyJob],
        *,
        tick_seconds: float = TICK_SECONDS,
    ) -> None:
        self.firer = firer
        self.services = services
        self.leadership = leadership
        self.jobs = {job.sop_id: job for job in jobs}
        self.runner = leadership.owner
        self.tick_seconds = tick_seconds
        self._lock = asyncio.Lock()
        self._adopt = True  # on start and after each takeover
        self._ticking: asyncio.Task[None] | None = None
        self._again = False
        self._stopped = False
        self._aps: AsyncIOScheduler | None = None

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Take the lease if free, start APScheduler and run the catch-up tick (a task)."""
        await self.keep_lease()
        self._aps = AsyncIOScheduler(timezone=self.services.settings.tz)
        for sop_id, cron in self._crons().items():
            self._aps.add_job(
                self._wake_up,
                cron_trigger(cron, self.services.settings.tz),
                id=f"wake:{sop_id}",
                coalesce=True,
                max_instances=1,
                misfire_grace_time=None,
            )
        lease_every = max(self.leadership.lease_seconds / 3, 1.0)
        self._aps.add_job(
            self.keep_lease, IntervalTrigger(seconds=lease_every), id="lease", max_instances=1
        )
        self._aps.add_job(
            self._wake_up, IntervalTrigger(seconds=self.tick_seconds), id="tick", max_instances=1
        )
        self._aps.start()
        self._kick()

    async def stop(self) -> None:
        """Stop waking, cancel a tick in flight (a next leader resumes its run), release."""
        self._stopped = True
        if self._aps is not None:
            self._aps.shutdown(wait=False)
            self._aps = None
        if self._ticking is not None:
            self._ticking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticking
        await self.leadership.release()

    async def settled(self) -> None:
        """Wait for the ticks started so far (the catch-up on start, a takeover's)."""
        while self._ticking is not None and not self._ticking.done():
            await asyncio.wait([self._ticking])

    def wake_ups(self) -> dict[str, datetime | None]:
        """APScheduler's jobs (``wake:<sop id>``, ``lease``, ``tick``) and their next run."""
        if self._aps is None:
            return {}
        return {job.id: job.next_run_time for job in self._aps.get_jobs()}

    async def _wake_up(self) -> None:
        self._kick()  # APScheduler's job returns at once; the tick is ours to cancel

    def _kick(self) -> None:
        # One tick task at a time: wake-ups during a long tick ask for one more tick.
        if self._ticking is not None and not self._ticking.done():
            self._again = True
            return
        self._ticking = asyncio.create_task(self._ticks(), name="sop-tick")

    async def _ticks(self) -> None:
        self._again = True
        while self._again:
            self._again = False
            try:
                await self.tick(self.services.clock.now())
            except Exception:
                log.exception("scheduler tick failed")

    async def keep_lease(self) -> bool:
        """Renew the lease, or try to take it; a takeover ticks at once. True when held."""
        if self._stopped:
            return False
        was = self.leadership.is_leader
        held = await (self.leadership.renew() if was else self.leadership.acquire())
        if held and not was:
            self._adopt = True
            if self._aps is not None:  # a takeover: catch up at once
                self._kick()
        return held

    # --- the tick ------------------------------------------------------------------------

    async def tick(self, now: datetime) -> TickReport:
        """Resume orphaned runs (first tick of a leadership), fire what is due, dispatch."""
        async with self._lock:
            if not self.leadership.is_leader:
                return TickReport(leader=False)
            report = TickReport(leader=True)
            if self._adopt:
                self._adopt = await self._resume_orphans(now, report)
            await self._retry_failed(now, report)
            for sop_id, cron in self._crons().items():
                if self._lost():  # the lease lapsed during a long tick
                    break
                await self._walk(sop_id, cron, now, report)
            if self.firer is not None:
                try:
                    report.dispatched = await self.firer.dispatch_due(now)
                except Exception:
                    log.exception("dispatching due touches failed")
                    report.failed.append("dispatch")
            await self._broadcasts(now, report)
            return report

    async def _broadcasts(self, now: datetime, report: TickReport) -> None:
        # Scheduled broadcasts whose time came start here; sending ones are settled.
        try:
            report.broadcasts = await self.services.broadcasts.start_due(now)
        except Exception:
            log.exception("starting due broadcasts failed")
            report.failed.append("broadcasts")

    def _lost(self) -> bool:
        return not self.leadership.is_leader

    def _crons(self) -> dict[str, str]:
        crons = {job.sop_id: job.cron for job in self.jobs.values()}
        if self.firer is not None:
            rules = self.firer.cron_rules
            crons.update({sop_id: rule.trigger.cron for sop_id, rule in rules.items()})
        return crons

    async def _walk(self, sop_id: str, cron: str, now: datetime, report: TickReport) -> None:
        settings = self.services.settings
        grace = settings.sop.catch_up_grace
        last = await runs.last_fire_time(sop_id)
        due = due_times(cron_trigger(cron, settings.tz), last, now, grace)
        for fire_time in due.missed:
            if await runs.record_missed(sop_id, fire_time, now, f"older than {grace}"):
                report.missed.append((sop_id, fire_time))
                log.warning(
                    "fire time missed (older than the catch-up grace); not run",
                    extra={"sop": sop_id, "fire_time": fire_time.isoformat()},
                )
        run_times = list(due.run)
        if sop_id in self.jobs and len(run_times) > 1:
            # A job does the work as of now: one run covers the fire times it missed.
            *covered, latest = run_times
            for fire_time in covered:
                await runs.record_missed(sop_id, fire_time, now, f"covered by {latest}")
            run_times = [latest]
        for fire_time in run_times:
            try:
                fired = await self._fire(sop_id, fire_time, now)
            except Exception:  # the run stays running; the next leadership resumes it
                log.exception("SOP fire failed", extra={"sop": sop_id})
                report.failed.append(sop_id)
                return
            if fired:
                report.fired.append((sop_id, fire_time))

    async def _fire(self, sop_id: str, fire_time: datetime, now: datetime) -> bool:
        job = self.jobs.get(sop_id)
        if job is None:
            assert self.firer is not None
            return await self.firer.fire(sop_id, fire_time, runner=self.runner) is not None
        run = await runs.begin(sop_id, fire_time, self.runner, now)
        if run is not None:
            await self._run_job(job, run, now)
        return run is not None

    async def _run_job(self, job: DailyJob, run: SopRun, now: datetime) -> None:
        try:
            counts: dict[str, Any] = dict(await job.run(self.services, run.fire_time, now))
        except Exception as exc:
            log.exception("daily job failed", extra={"sop": job.sop_id})
            await runs.finish(run.id, runs.FAILED, {}, self.services.clock.now(), repr(exc))
            return
        await runs.finish(run.id, runs.DONE, counts, self.services.clock.now())
        log.info("daily job done", extra={"sop": job.sop_id, "counts": counts})

    async def _retry_failed(self, now: datetime, report: TickReport) -> None:
        """SOP runs that failed within the catch-up grace get another attempt (at most
        ``RETRIES`` in all; the claims are idempotent, so a retry finishes the audience)."""
        if self.firer is None:
            return
        since = now - self.services.settings.sop.catch_up_grace
        for run in await runs.failed_since(since, RETRIES):
            if run.sop_id not in self.firer.cron_rules or self._lost():
                continue
            if not await runs.retry(run.id, self.runner):
                continue
            log.warning("retrying a failed SOP run", extra={"sop": run.sop_id, "run_id": run.id})
            try:
                await self.firer.resume(run, runner=self.runner)
            except Exception:
                log.exception("SOP retry failed", extra={"sop": run.sop_id})
                report.failed.append(run.sop_id)
                continue
            report.resumed.append(run.id)

    async def _resume_orphans(self, now: datetime, report: TickReport) -> bool:
        """Resume the runs a dead leader left running; True when some were too young to
        tell (look again next tick)."""
        again = False
        ours = self._crons()  # event-triggered runs belong to whoever handles the event
        # A run younger than one lease may belong to a leader that is still running it
        # (its lease lapsed a moment ago: both believe they lead); it is left for a later
        # tick, when a live runner would have finished it.
        young = now - timedelta(seconds=self.leadership.lease_seconds)
        for run in await runs.unfinished():
            if run.sop_id not in ours:
                continue
            if run.runner != self.runner and run.started_at > young:
                again = True  # look again next tick
                continue
            job = self.jobs.get(run.sop_id)
            if not await runs.adopt(run, self.runner):
                continue
            log.warning(
                "resuming a run left running",
                extra={"sop": run.sop_id, "run_id": run.id, "previous_runner": run.runner},
            )
            try:
                if job is not None:
                    await self._run_job(job, run, now)
                else:
                    assert self.firer is not None
                    await self.firer.resume(run, runner=self.runner)
            except Exception:
                log.exception("resuming a run failed", extra={"sop": run.sop_id})
                report.failed.append(run.sop_id)
                continue
            report.resumed.append(run.id)
        return again
