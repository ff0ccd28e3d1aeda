"""The SOP engine: a fire time runs once even when two runners fire it together, a run
killed half-way is resumed without a duplicate claim, and the scheduler fires through
the real engine."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.config import Settings
from bot.context import Services
from sop import runs
from sop.dispatch import TouchDispatcher
from sop.engine import SopEngine
from storage.cache import Cache
from storage.keys import KeyBuilder
from storage.models import Identity, Member, PointsEntry, SopRun, Touchpoint
from storage.models.members import OA_OPENID
from storage.repos import members as members_repo
from tests.conftest import OA_APPID, FakeServer, base_config, make_settings, started_services
from tests.fakes import FakeWall

SH = ZoneInfo("Asia/Shanghai")
FIRE = datetime(2027, 5, 20, 9, 0, tzinfo=SH)
BIRTHDAY = {
    "id": "birthday",
    "kind": "service",
    "trigger": {"cron": "0 9 * * *"},
    "audience": {"name": "birthday_today"},
    "action": {"template": "sop_birthday", "points": 200},
    "once_per": "year",
}


def _settings(database: str, fake: FakeServer, **sop: Any) -> Settings:
    raw = base_config(database)
    raw["sop"] = {"rules": [BIRTHDAY], "batch": 100, **sop}
    return make_settings(raw, api=fake.api())


async def _members(services: Services, count: int, birthday: date) -> list[int]:
    made = []
    for i in range(count):
        row = await members_repo.create_with_identity(
            OA_OPENID, OA_APPID, f"oEngine{i:05d}", now=services.clock.now()
        )
        await Member.filter(id=row.id).update(
            birthday=birthday, birth_md=birthday.month * 100 + birthday.day
        )
        made.append(int(row.id))
    await Identity.all().update(followed=True)
    return made


async def test_two_runners_on_the_same_tick_claim_each_member_once(
    database: str, fake: FakeServer, wall: FakeWall, cache: Cache, keys: KeyBuilder
) -> None:
    wall.now = FIRE.timestamp()
    settings = _settings(database, fake)
    async with (
        started_services(settings, wall, cache, keys) as one,
        started_services(settings, wall, cache, keys) as two,
    ):
        members = await _members(one, 250, date(1991, 5, 20))
        await _member_born_next_day(one)  # never selected
        first, second = SopEngine(one), SopEngine(two)
        done = await asyncio.gather(
            first.fire("birthday", FIRE, runner="a"), second.fire("birthday", FIRE, runner="b")
        )
    assert sum(run is not None for run in done) == 1
    assert await SopRun.filter(sop_id="birthday").count() == 1
    touched = await Touchpoint.filter(sop_id="birthday").values_list("member_id", flat=True)
    assert sorted(int(m) for m in touched) == members
    assert await PointsEntry.filter(reason="birthday").count() == 250
    run = next(r for r in done if r is not None)
    assert run.status == runs.DONE
    assert run.counts["selected"] == 250
    assert run.counts["claimed"] == 250


async def _member_born_next_day(services: Services) -> None:
    row = await members_repo.create_with_identity(
        OA_OPENID, OA_APPID, "oEngineOther", now=services.clock.now()
    )
    await Member.filter(id=row.id).update(birthday=date(1991, 5, 21), birth_md=521)


class _Killed(Exception):
    """The runner died here."""


async def test_a_run_killed_mid_claim_is_resumed_without_a_duplicate(
    database: str, fake: FakeServer, wall: FakeWall, cache: Cache, keys: KeyBuilder
) -> None:
    wall.now = FIRE.timestamp()
    settings = _settings(database, fake)
    async with started_services(settings, wall, cache, keys) as services:
        members = await _members(services, 230, date(1992, 5, 20))
        engine = SopEngine(services)
        calls = 0

        def die_after_two_pages(stage: str, done: int) -> None:
            nonlocal calls
            calls += 1
            if stage == "claimed" and calls == 2:
                raise _Killed

        with pytest.raises(_Killed):
            await engine.fire("birthday", FIRE, runner="dead", progress=die_after_two_pages)
        partial = await Touchpoint.filter(sop_id="birthday").count()
        assert 0 < partial < 230
        await SopRun.filter(sop_id="birthday").update(status=runs.RUNNING)  # as if killed
        (left,) = await runs.unfinished("birthday")
        resumed = await SopEngine(services).resume(left, runner="heir")
    assert resumed.status == runs.DONE
    touched = await Touchpoint.filter(sop_id="birthday").values_list("member_id", flat=True)
    assert sorted(int(m) for m in touched) == members
    assert await PointsEntry.filter(reason="birthday").count() == 230
    assert await SopRun.filter(sop_id="birthday").count() == 1


async def test_the_scheduler_fires_a_due_sop_through_the_engine(
    database: str, fake: FakeServer, wall: FakeWall, cache: Cache, keys: KeyBuilder
) -> None:
    from sop.wiring import make_scheduler

    wall.now = (FIRE + timedelta(minutes=1)).timestamp()
    settings = _settings(database, fake)
    async with started_services(settings, wall, cache, keys) as services:
        members = await _members(services, 3, date(1993, 5, 20))
        scheduler = make_scheduler(services, SopEngine(services))
        assert await scheduler.leadership.acquire()
        first = await scheduler.tick(services.clock.now())
        again = await scheduler.tick(services.clock.now())
    assert [sop for sop, _ in first.fired if not sop.startswith("job:")] == ["birthday"]
    assert again.fired == []
    run = await runs.get("birthday", FIRE)
    assert run is not None
    assert run.status == runs.DONE
    assert run.counts["claimed"] == 3
    assert await Touchpoint.filter(sop_id="birthday").count() == len(members)


class _FlakyDispatcher(TouchDispatcher):
    """Fails its first pass (a database hiccup), then works."""

    failures = 1

    async def dispatch_due(self, now: datetime, **scope: Any) -> Counter[str]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database went away")
        return await super().dispatch_due(now, **scope)


async def test_a_failed_run_is_retried_by_the_next_tick(
    database: str, fake: FakeServer, wall: FakeWall, cache: Cache, keys: KeyBuilder
) -> None:
    from sop.wiring import make_scheduler

    wall.now = (FIRE + timedelta(minutes=1)).timestamp()
    settings = _settings(database, fake)
    async with started_services(settings, wall, cache, keys) as services:
        await _members(services, 2, date(1994, 5, 20))
        rules = {r.id: r for r in settings.sop.rules}
        engine = SopEngine(services, _FlakyDispatcher(services, rules))
        scheduler = make_scheduler(services, engine)
        assert await scheduler.leadership.acquire()
        first = await scheduler.tick(services.clock.now())
        assert "birthday" in first.failed
        failed = await runs.get("birthday", FIRE)
        assert failed is not None
        assert failed.status == runs.FAILED
        second = await scheduler.tick(services.clock.now())
    assert second.resumed == [failed.id]
    run = await runs.get("birthday", FIRE)
    assert run is not None
    assert (run.status, run.counts["attempts"], run.counts["claimed"]) == (runs.DONE, 2, 0)
    assert await PointsEntry.filter(reason="birthday").count() == 2
