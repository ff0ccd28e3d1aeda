"""生日: parse and validate, set once with a conditional update, locked afterwards."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient

from bot.config import Settings
from bot.services import birthday
from storage.models import Member
from tests.conftest import AppMaker, base_config, make_settings
from tests.fakes import FakeWall
from tests.helpers import oa_crypto, oa_text, post_oa, reply_fields

TODAY = date(2023, 11, 15)  # the pinned wall clock, in Shanghai


@pytest.mark.parametrize(
    "text", ["1990-05-20", "1990/05/20", "1990/5/20", "19900520", "1990年5月20日"]
)
def test_accepted_formats(text: str) -> None:
    assert birthday.parse(text, TODAY) == date(1990, 5, 20)


@pytest.mark.parametrize(
    "text",
    ["1990-02-30", "1990-13-01", "2023-11-16", "1902-11-15", "May 20", "1990-05", "20-05-1990", ""],
)
def test_refused_dates(text: str) -> None:
    with pytest.raises(birthday.InvalidBirthday):
        birthday.parse(text, TODAY)


def test_the_age_bounds_are_inclusive() -> None:
    assert birthday.parse("2023-11-15", TODAY) == TODAY  # born today: age 0
    assert birthday.parse("1903-11-15", TODAY) == date(1903, 11, 15)  # exactly 120
    assert birthday.age(date(1903, 11, 16), TODAY) == 119
    assert birthday.month_day(date(2000, 2, 29)) == 229


async def _say(client: TestClient[Any, Any], settings: Settings, text: str, wall: FakeWall) -> str:
    wall.advance(1)
    resp = await post_oa(client, settings, oa_text(text), timestamp=int(wall.now))
    return str(reply_fields(oa_crypto(settings), await resp.text())["Content"])


async def test_set_once_then_locked(make_client: AppMaker, wall: FakeWall, database: str) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    assert "生日 1990-05-20" in await _say(client, settings, "生日", wall)
    assert "没能识别" in await _say(client, settings, "生日 1990-02-30", wall)
    assert "没能识别" in await _say(client, settings, "生日 2030-01-01", wall)
    assert (await Member.get()).birthday is None
    assert "生日已登记：1990-05-20" in await _say(client, settings, "生日 1990/05/20", wall)
    member = await Member.get()
    assert (member.birthday, member.birth_md) == (date(1990, 5, 20), 520)
    locked = await _say(client, settings, "生日 1991-01-01", wall)
    assert "已登记为 1990-05-20" in locked
    assert "不能再修改" in locked
    assert "已登记为 1990-05-20" in await _say(client, settings, "生日", wall)
    await member.refresh_from_db()
    assert member.birthday == date(1990, 5, 20)


async def test_two_concurrent_attempts_store_one_birthday(database: str) -> None:
    member = await Member.create(
        code="BDAY0001", created_at=datetime(2023, 1, 1, tzinfo=ZoneInfo("Asia/Shanghai"))
    )
    results = await asyncio.gather(
        birthday.set_once(member.id, date(1990, 5, 20)),
        birthday.set_once(member.id, date(1985, 1, 2)),
    )
    assert sorted(r.set for r in results) == [False, True]
    winner = next(r.birthday for r in results if r.set)
    assert all(r.birthday == winner for r in results)
    await member.refresh_from_db()
    assert member.birthday == winner
    with pytest.raises(LookupError):
        await birthday.set_once(999_999, date(1990, 1, 1))
