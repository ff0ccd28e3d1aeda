"""Catch-up through the app: start, stop, move the clock past fire times, start again."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

import pytest
from aiohttp.test_utils import TestServer

from bot.app import Overrides, create_app
from bot.config import Settings
from bot.config_sop import DEFAULT_JOBS
from sop import runs
from sop.wiring import SCHEDULER
from storage.cache import MemoryCache
from storage.models import Member, SopRun, Touchpoint
from storage.timeutil import utc
from tests.conftest import base_config, make_settings
from tests.sched_support import RecordingFirer, cron_rule
from tests.test_sop_schedule import DAY1, SH, Clock

NO_JOBS = dict.fromkeys(DEFAULT_JOBS, "")


async def serve_once(settings: Settings, clock: Clock, firer: RecordingFirer) -> None:
    """One process lifetime: start the app, let its start-up tick finish, stop it."""
    overrides = Overrides(
        clock=clock.clock,
        cache=MemoryCache(),
        manage_db=False,
        run_sender=False,
        sop_firer=firer,
    )
    app = create_app(settings, overrides)
    server = TestServer(app)
    await server.start_server()
    try:
        await app[SCHEDULER].settled()
        assert app[SCHEDULER].leadership.is_leader
    finally:
        await server.close()
    assert not app[SCHEDULER].leadership.is_leader  # released on shutdown


async def test_a_restart_catches_up_once_and_records_older_misses(
    database: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(base_config(database), sop={"jobs": NO_JOBS})
    clock = Clock(DAY1)  # 09:30 on day 1
    firer = RecordingFirer(clock.clock, cron_rule("morning", "0 9 * * *"))
    firer.rules["early"] = cron_rule("early", "0 5 * * *")

    await serve_once(settings, clock, firer)  # start-up catch-up: 05:00 and 09:00 of day 1
    assert await SopRun.filter(status="done").count() == 2

    clock.move(timedelta(days=1, hours=2, minutes=30))  # day 2, 12:00: 3 h after 09:00
    with caplog.at_level(logging.WARNING, logger="sop.schedule"):
        await serve_once(settings, clock, firer)
    morning = await SopRun.filter(
        sop_id="morning", fire_time=utc(datetime(2027, 3, 2, 9, tzinfo=SH))
    )
    assert [r.status for r in morning] == ["done"]
    early = await runs.get("early", datetime(2027, 3, 2, 5, tzinfo=SH))  # 7 h old
    assert early is not None
    assert early.status == "missed"
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "missed" in r.msg]
    assert [getattr(r, "sop", "") for r in warned] == ["early"]
    assert await SopRun.all().count() == 4
    assert len(firer.fired) == 3

    await serve_once(settings, clock, firer)  # a restart with nothing due runs nothing
    assert await SopRun.all().count() == 4
    assert len(firer.fired) == 3


async def test_the_scheduler_is_off_when_configured(database: str) -> None:
    settings = make_settings(base_config(database), sop={"scheduler": False})
    app = create_app(settings, Overrides(manage_db=False, run_sender=False))
    assert SCHEDULER not in app
    server = TestServer(app)
    await server.start_server()
    await server.close()
    assert SCHEDULER not in app
    assert await SopRun.all().count() == 0


async def _serve_real_engine(settings: Settings, clock: Clock) -> None:
    overrides = Overrides(clock=clock.clock, cache=MemoryCache(), manage_db=False, run_sender=False)
    app = create_app(settings, overrides)
    server = TestServer(app)
    await server.start_server()
    try:
        await app[SCHEDULER].settled()
    finally:
        await server.close()


async def test_the_real_engine_catches_up_a_birthday_after_a_restart(database: str) -> None:
    birthday = {
        "id": "birthday",
        "kind": "service",
        "trigger": {"cron": "0 9 * * *"},
        "audience": {"name": "birthday_today"},
        "action": {"template": "sop_birthday", "points": 200},
        "once_per": "year",
    }
    settings = make_settings(base_config(database), sop={"jobs": NO_JOBS, "rules": [birthday]})
    born = await Member.create(
        code="MCATCH01", birthday=date(1990, 3, 2), birth_md=302, created_at=DAY1
    )
    clock = Clock(DAY1)  # 09:30 on 1 March: today's 09:00 runs, nobody is born today
    await _serve_real_engine(settings, clock)
    clock.move(timedelta(days=1, hours=2, minutes=30))  # 12:00 on 2 March, down since
    await _serve_real_engine(settings, clock)
    await _serve_real_engine(settings, clock)  # and once more: nothing new

    fired = await SopRun.filter(sop_id="birthday").order_by("fire_time")
    assert [(r.fire_time.astimezone(SH).day, r.status) for r in fired] == [(1, "done"), (2, "done")]
    assert fired[1].counts["claimed"] == 1
    assert await Touchpoint.filter(sop_id="birthday").values_list("member_id", flat=True) == [
        born.id
    ]
    assert (await Member.get(id=born.id)).points_balance == 200
