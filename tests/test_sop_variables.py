"""Each built-in audience's template variables, rendered into the message sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta

import pytest

from bot.context import Services
from bot.services import points
from sop.dispatch import TouchDispatcher
from storage.cache import Cache
from storage.keys import KeyBuilder
from storage.models import GrowthEntry, Member, OutboxMessage, SignIn, Touchpoint
from storage.timeutil import utc
from tests.conftest import FakeServer
from tests.fakes import FakeWall
from tests.sop_support import SHANGHAI, at, dispatching, member, rule, sop_settings, touch

NOON = datetime(2023, 11, 15, 12, 0, tzinfo=SHANGHAI)
RULES = [
    rule("streak", "marketing", "signed_in_yesterday_not_today", template="sop_signin_streak"),
    rule("expiry", "service", "points_expiring", template="sop_points_expiry"),
    rule("warning", "service", "tier_warning", template="sop_tier_warning"),
    rule("day", "marketing", "member_day_active", template="sop_member_day"),
    rule("back", "marketing", "inactive", template="sop_reactivation"),
]


@pytest.fixture
async def dsp(
    database: str, fake: FakeServer, wall: FakeWall, cache: Cache, keys: KeyBuilder
) -> AsyncIterator[tuple[Services, TouchDispatcher]]:
    """Services and a dispatcher of one SOP per built-in audience."""
    at(wall, NOON)
    async with dispatching(sop_settings(database, fake.api()), wall, cache, keys, *RULES) as made:
        yield made


async def _sent(dispatcher: TouchDispatcher, sop_id: str, member_id: int) -> str:
    made = await touch(sop_id, member_id, NOON, sop_id)
    assert await dispatcher.dispatch_due(NOON) == {"unreachable": 1}
    done = await Touchpoint.get(id=made.id)
    row = await OutboxMessage.get(id=done.outbox_id)
    return str(row.payload["text"])


async def test_the_streak_reminder_names_the_streak(
    dsp: tuple[Services, TouchDispatcher],
) -> None:
    services, dispatcher = dsp
    member_id = await member(services, "oS1")
    await SignIn.create(
        member_id=member_id, day=date(2023, 11, 14), streak=4, points=5, created_at=utc(NOON)
    )
    text = await _sent(dispatcher, "streak", member_id)
    assert "已连续签到 4 天" in text
    assert "第 5 天" in text


async def test_the_expiry_reminder_names_the_amount_and_the_last_day(
    dsp: tuple[Services, TouchDispatcher],
) -> None:
    services, dispatcher = dsp
    member_id = await member(services, "oE1")
    expires = datetime(2023, 12, 1, tzinfo=SHANGHAI)
    await points.earn(
        member_id, 300, "e1", now=NOON, expires_at=expires, reason="t", source="order"
    )
    far = datetime(2025, 1, 1, tzinfo=SHANGHAI)
    await points.earn(member_id, 50, "e2", now=NOON, expires_at=far, reason="t", source="order")
    text = await _sent(dispatcher, "expiry", member_id)
    assert "300 积分将于 2023-11-30 后过期" in text
    assert "当前可用积分 350" in text


async def test_the_tier_warning_names_the_tier_it_would_drop_to(
    dsp: tuple[Services, TouchDispatcher],
) -> None:
    services, dispatcher = dsp
    member_id = await member(services, "oW1")
    await Member.filter(id=member_id).update(tier="silver", growth=3200)
    await GrowthEntry.create(
        member_id=member_id,
        idempotency_key="old",
        amount=2000,
        created_at=utc(NOON - timedelta(days=400)),
    )
    await GrowthEntry.create(
        member_id=member_id, idempotency_key="new", amount=1200, created_at=utc(NOON)
    )
    text = await _sent(dispatcher, "warning", member_id)
    assert "2024-01-01 将进行年度等级评定" in text
    assert "成长值为 1200" in text
    assert "再获得 1800 成长值即可保级银卡，否则将调整为普卡" in text


async def test_member_day_and_reactivation_variables(
    dsp: tuple[Services, TouchDispatcher],
) -> None:
    services, dispatcher = dsp
    member_id = await member(services, "oM1")
    assert "积分 2 倍" in await _sent(dispatcher, "day", member_id)
    await Member.filter(id=member_id).update(last_active_at=utc(NOON - timedelta(days=31)))
    assert "您已经 31 天没来看看了" in await _sent(dispatcher, "back", member_id)
