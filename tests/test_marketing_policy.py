"""The marketing policy: quiet hours across midnight in business time, the cap."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.config_sop import SopSettings
from bot.services.marketing import MarketingPolicy
from storage.models import Member, OutboxMessage
from storage.timeutil import utc

SH, UTC = ZoneInfo("Asia/Shanghai"), ZoneInfo("UTC")
POLICY = MarketingPolicy(SopSettings(), SH)


@pytest.mark.parametrize(
    ("local", "until"),
    [
        ((22, 30), datetime(2027, 3, 2, 8, 0, tzinfo=SH)),
        ((22, 0), datetime(2027, 3, 2, 8, 0, tzinfo=SH)),
        ((0, 10), datetime(2027, 3, 1, 8, 0, tzinfo=SH)),
        ((7, 59), datetime(2027, 3, 1, 8, 0, tzinfo=SH)),
        ((8, 0), None),
        ((21, 59), None),
    ],
)
def test_quiet_hours_cross_midnight_on_a_utc_clock(
    local: tuple[int, int], until: datetime | None
) -> None:
    moment = datetime(2027, 3, 1, *local, tzinfo=SH).astimezone(UTC)
    assert POLICY.quiet_until(moment) == until


def test_daytime_and_empty_quiet_hours() -> None:
    lunch = MarketingPolicy(SopSettings(quiet_hours="12:00-13:30"), SH)
    noon = datetime(2027, 3, 1, 12, 15, tzinfo=SH)
    assert lunch.quiet_until(noon) == datetime(2027, 3, 1, 13, 30, tzinfo=SH)
    assert lunch.quiet_until(noon + timedelta(hours=2)) is None
    assert MarketingPolicy(SopSettings(quiet_hours=""), SH).quiet_until(noon) is None


async def _outbox(member_id: int, key: str, kind: str, status: str) -> None:
    await OutboxMessage.create(
        idempotency_key=key,
        channel="oa_cs",
        account="brand",
        recipient="o1",
        member_id=member_id,
        source="notice",
        kind=kind,
        payload={"text": "x"},
        status=status,
        due_at=utc(datetime.now(UTC)),
    )


async def test_the_cap_counts_marketing_rows_that_may_reach_the_member(database: str) -> None:
    member = await Member.create(code="CAP00001", created_at=utc(datetime.now(UTC)))
    now = datetime.now(UTC)
    policy = MarketingPolicy(SopSettings(marketing_cap=2), SH)
    await _outbox(member.id, "a", "marketing", "unreachable")
    await _outbox(member.id, "b", "marketing", "failed")
    await _outbox(member.id, "c", "service", "sent")
    await _outbox(member.id, "d", "marketing", "sent")
    assert not await policy.capped(member.id, now)
    await _outbox(member.id, "e", "marketing", "pending")
    assert await policy.capped(member.id, now)
    assert await policy.sent_recently(member.id, now) == 2
    assert not await policy.capped(member.id, now + timedelta(days=8))  # out of the window
