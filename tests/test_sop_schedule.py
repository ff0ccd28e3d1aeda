"""The scheduler's tick: catch-up from the last fire time, missed times, exactly once."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.app import Overrides, build_services
from bot.clock import BusinessClock
from bot.config import ConfigError, Settings
from bot.context import Services
from sop import runs
from sop.catchup import cron_trigger, due_times
from sop.jobs import DailyJob
from sop.leader import LocalLeadership
from sop.schedule import SopScheduler
from storage.cache import MemoryCache
from storage.models import SopRun, Touchpoint
from tests.conftest import make_settings
from tests.sched_support import RecordingFirer, cron_rule

SH = ZoneInfo("Asia/Shanghai")
DAY1 = datetime(2027, 3, 1, 9, 30, tzinfo=SH)


class Clock:
    """A business clock whose source the test moves."""

    def __init__(self, start: datetime) -> None:
        self.t = start.timestamp()
        self.clock = BusinessClock(SH, source=lambda: self.t)

    def move(self, delta: timedelta) -> datetime:
        """Advance and return the new now."""
        self.t += delta.total_seconds()
        return self.clock.now()


def services_at(settings: Settings, clock: BusinessClock) -> Services:
    """Services on the test database with this clock."""
    return build_services(settings, Overrides(clock=clock, cache=MemoryCache()))


async def leading(
    firer: RecordingFirer | None, services: Services, jobs: list[DailyJob] | None = None
) -> SopScheduler:
    """A scheduler (not started) holding the in-process lease."""
    scheduler = SopScheduler(firer, services, LocalLeadership(), jobs or [])
    assert await scheduler.keep_lease()
    return scheduler


def test_due_times_walks_from_the_last_fire_time() -> None:
    trigger = cron_trigger("0 5,9 * * *", SH)
    now = datetime(2027, 3, 2, 12, 0, tzinfo=SH)
    grace = timedelta(hours=6)
    fresh = due_times(trigger, None, now, grace)
    assert (fresh.run, fresh.missed) == ([datetime(2027, 3, 2, 9, tzinfo=SH)], [])
    after = due_times(trigger, datetime(2027, 3, 1, 9, tzinfo=SH), now, grace)
    assert after.run == [datetime(2027, 3, 2, 9, tzinfo=SH)]
    assert after.missed == [datetime(2027, 3, 2, 5, tzinfo=SH)]
    assert due_times(trigger, datetime(2027, 3, 2, 9, tzinfo=SH), now, grace).run == []
    capped = due_times(cron_trigger("* * * * *", SH), now - timedelta(days=1), now, grace, 10)
    assert len(capped.missed) == 10
    assert capped.run == []


async def test_a_tick_fires_once_and_records_older_misses(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(DAY1)
    firer = RecordingFirer(clock.clock, cron_rule("morning", "0 9 * * *"))
    firer.rules["early"] = cron_rule("early", "0 5 * * *")
    scheduler = await leading(firer, services_at(settings, clock.clock))

    first = await scheduler.tick(clock.clock.now())  # never run: from now - 6 h
    assert sorted(s for s, _ in first.fired) == ["early", "morning"]
    assert (await scheduler.tick(clock.clock.now())).fired == []

    now = clock.move(timedelta(days=1, hours=2, minutes=30))  # day 2, 12:00
    with caplog.at_level(logging.WARNING, logger="sop.schedule"):
        report = await scheduler.tick(now)
    assert report.fired == [("morning", datetime(2027, 3, 2, 9, tzinfo=SH))]
    assert report.missed == [("early", datetime(2027, 3, 2, 5, tzinfo=SH))]
    missed = await runs.get("early", datetime(2027, 3, 2, 5, tzinfo=SH))
    assert missed is not None
    assert missed.status == runs.MISSED
    assert any("missed" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert len(firer.fired) == 3
    assert firer.claims == 3
    assert len(firer.dispatched) == 3  # every tick of the leader dispatches due touches


async def test_a_follower_does_nothing(settings: Settings) -> None:
    clock = Clock(DAY1)
    firer = RecordingFirer(clock.clock, cron_rule("morning", "0 9 * * *"))
    scheduler = SopScheduler(firer, services_at(settings, clock.clock), LocalLeadership(), [])
    report = await scheduler.tick(clock.clock.now())
    assert not report.leader
    assert firer.fired == []
    assert firer.dispatched == []
    assert await SopRun.all().count() == 0


async def test_a_run_killed_mid_fire_is_resumed_once_by_the_next_leader(settings: Settings) -> None:
    clock = Clock(DAY1)
    firer = RecordingFirer(clock.clock, cron_rule("morning", "0 9 * * *"))
    firer.hold = asyncio.Event()  # never set: the first leader dies inside the fire
    first = await leading(firer, services_at(settings, clock.clock))
    killed = asyncio.create_task(first.tick(clock.clock.now()))
    await firer.claimed.wait()
    killed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await killed
    (left,) = await runs.unfinished()
    assert left.runner == first.runner
    other = await runs.begin("welcome", DAY1, "another-process", DAY1, trigger="event")
    assert other is not None

    firer.hold = None
    successor = await leading(firer, services_at(settings, clock.clock))  # a restart
    report = await successor.tick(clock.move(timedelta(minutes=1)))
    assert report.resumed == [left.id]
    assert report.fired == []
    assert (await successor.tick(clock.clock.now())).resumed == []
    run = await SopRun.get(id=left.id)
    assert (run.status, run.runner, run.counts["resumed"]) == ("done", successor.runner, 1)
    assert len(firer.fired) == 1
    assert firer.resumed == [(left.id, successor.runner)]
    assert firer.claims == 1
    assert await Touchpoint.all().count() == 1
    assert [r.id for r in await runs.unfinished()] == [other.id]  # not a cron run of ours


async def test_a_failing_fire_does_not_stop_the_others(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(DAY1)

    class Broken(RecordingFirer):
        async def fire(self, sop_id: str, fire_time: datetime, *, runner: str) -> SopRun | None:
            if sop_id == "broken":
                raise RuntimeError("engine bug")
            return await super().fire(sop_id, fire_time, runner=runner)

    firer = Broken(clock.clock, cron_rule("broken", "0 8 * * *"), cron_rule("fine", "0 9 * * *"))
    scheduler = await leading(firer, services_at(settings, clock.clock))
    with caplog.at_level(logging.ERROR, logger="sop.schedule"):
        report = await scheduler.tick(clock.clock.now())
    assert [s for s, _ in report.fired] == ["fine"]
    assert report.failed == ["broken"]
    assert any(r.levelno == logging.ERROR for r in caplog.records)


async def test_jobs_and_sops_share_the_walk(settings: Settings) -> None:
    clock = Clock(DAY1)
    seen: list[tuple[datetime, datetime]] = []

    async def probe(services: Services, fire_time: datetime, now: datetime) -> dict[str, int]:
        seen.append((fire_time, now))
        return {"probed": len(seen)}

    async def broken(services: Services, fire_time: datetime, now: datetime) -> dict[str, int]:
        raise ValueError("no")

    jobs = [DailyJob("probe", "0 8 * * *", probe), DailyJob("broken", "0 7 * * *", broken)]
    scheduler = await leading(None, services_at(settings, clock.clock), jobs)
    await scheduler.tick(clock.clock.now())
    await scheduler.tick(clock.clock.now())
    assert seen == [(datetime(2027, 3, 1, 8, tzinfo=SH), DAY1)]
    ok = await runs.get("job:probe", datetime(2027, 3, 1, 8, tzinfo=SH))
    bad = await runs.get("job:broken", datetime(2027, 3, 1, 7, tzinfo=SH))
    assert ok is not None
    assert (ok.status, ok.counts) == ("done", {"probed": 1})
    assert bad is not None
    assert bad.status == "failed"
    assert "no" in bad.note


def test_settings_validate_job_crons() -> None:
    settings = make_settings(sop={"jobs": {"wecom_sync": "", "points_expire": "15 1 * * *"}})
    assert settings.sop.jobs["wecom_sync"] == ""
    assert settings.sop.jobs["points_expire"] == "15 1 * * *"
    assert settings.sop.jobs["coupons_expire"] == "10 0 * * *"
    for bad in ({"nightly": "0 1 * * *"}, {"points_expire": "every day"}):
        with pytest.raises(ConfigError, match=r"sop\.jobs"):
            make_settings(sop={"jobs": bad})
