"""Racing one member's code requests and guesses: the member lock keeps the hourly count
exact and the conditional update keeps the tries at five (PostgreSQL shows real races)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bot.background import Background
from bot.context import MemberRef
from bot.services.merge import merge_members
from bot.services.phone import PhoneService
from bot.templating import Renderer
from storage import db
from storage.models import Member, PhoneVerification
from tests.conftest import base_config, make_settings
from tests.test_phone_binding import NUMBER, SECURITY, RecordingSms

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 5, 20, 9, 30, tzinfo=SH)
RACERS = 8


@pytest.fixture
async def wide_pool(database: str) -> AsyncIterator[str]:
    """The same database behind a pool as wide as the race (asyncpg's default is 5)."""
    if db.is_sqlite(database):
        yield database  # one connection: transactions take turns
        return
    await db.close_db()
    await db.open_db(f"{database}{'&' if '?' in database else '?'}minsize=1&maxsize=30")
    yield database


async def _service(database: str) -> tuple[PhoneService, RecordingSms, MemberRef]:
    sms = RecordingSms()
    settings = make_settings(base_config(database), security=SECURITY)
    service = PhoneService(settings, Renderer(), Background(), sms, merge_members)
    member = await Member.create(code="RACER001", created_at=NOW)
    return service, sms, MemberRef(int(member.id), "RACER001")


async def test_racing_requests_issue_exactly_three_codes(wide_pool: str) -> None:
    service, sms, member = await _service(wide_pool)
    results = await asyncio.gather(*(service.request(member, NUMBER, NOW) for _ in range(RACERS)))
    await service.background.idle()
    assert sorted(r.state for r in results) == ["rate_limited"] * (RACERS - 3) + ["sent"] * 3
    assert await PhoneVerification.filter(member_id=member.id).count() == 3
    assert await PhoneVerification.filter(member_id=member.id, status="pending").count() == 1
    assert len(sms.sent) == 3


async def test_racing_guesses_get_five_tries_in_all(wide_pool: str) -> None:
    service, sms, member = await _service(wide_pool)
    await service.request(member, NUMBER, NOW)
    await service.background.idle()
    code = sms.code()
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    results = await asyncio.gather(
        *(service.verify(member, wrong, NOW, services=None) for _ in range(RACERS))  # type: ignore[arg-type]
    )
    assert sum(r.state == "wrong" for r in results) == 4
    assert sum(r.state == "locked" for r in results) == RACERS - 4
    row = await PhoneVerification.get(member_id=member.id)
    assert (row.tries, row.status) == (5, "failed")
    assert (await service.verify(member, code, NOW, services=None)).state == "locked"  # type: ignore[arg-type]
