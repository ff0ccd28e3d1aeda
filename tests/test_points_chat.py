"""积分 in chat: balance, debt, points expiring within 30 business days, the last 5 entries."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp.test_utils import TestClient

from bot.config import Settings
from bot.services import points, points_view
from storage.models import Member
from tests.conftest import AppMaker, base_config, make_settings
from tests.fakes import FakeWall
from tests.helpers import oa_crypto, oa_text, post_oa, reply_fields

SH = ZoneInfo("Asia/Shanghai")
# The pinned wall clock (1_700_000_000) is 2023-11-15 06:13:20 in Shanghai.
TODAY_END = datetime(2023, 11, 16, tzinfo=SH)


def _click(openid: str, key: str, at: int) -> str:
    return (
        f"<xml><ToUserName><![CDATA[gh_brand]]></ToUserName><FromUserName><![CDATA[{openid}]]>"
        f"</FromUserName><CreateTime>{at}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[{key}]]></EventKey></xml>"
    )


async def _say(client: TestClient[Any, Any], settings: Settings, xml: str, wall: FakeWall) -> str:
    wall.advance(1)
    resp = await post_oa(client, settings, xml, timestamp=int(wall.now))
    return str(reply_fields(oa_crypto(settings), await resp.text())["Content"])


async def _earn(
    member_id: int, base: int, key: str, at: datetime, expires: datetime, reason: str
) -> None:
    await points.earn(
        member_id, base, key, now=at, expires_at=expires, reason=reason, source="test"
    )


async def test_points_reply_shows_balance_expiring_and_the_last_five_entries(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    empty = await _say(client, settings, oa_text("积分"), wall)
    assert "您的积分：0" in empty
    assert "还没有积分记录" in empty
    member = (await Member.get()).id
    start = datetime(2023, 1, 10, 9, tzinfo=SH)
    await _earn(member, 40, "old", start, datetime(2023, 6, 1, tzinfo=SH), "signin")
    await points.expire_due(datetime(2023, 6, 1, tzinfo=SH))
    soon = TODAY_END + timedelta(days=30)  # the last instant the 30-day window counts
    await _earn(member, 120, "soon", start, soon, "purchase")
    await _earn(member, 7, "late", start, soon + timedelta(seconds=1), "signin")
    for day in range(1, 4):
        await _earn(
            member,
            5,
            f"s{day}",
            start + timedelta(days=day),
            soon + timedelta(days=400),
            "signin",
        )
    await points.spend(
        member, 10, "mall", now=datetime(2023, 11, 1, tzinfo=SH), reason="redeem", source="mall"
    )
    text = await _say(client, settings, oa_text("我的积分"), wall)
    assert "您的积分：132" in text
    assert "30 天内将过期：110 积分" in text  # 120 − the 10 spent from the soonest lot
    assert "欠分" not in text
    lines = [line for line in text.splitlines() if line.startswith("·")]
    assert lines == [
        "· 2023-11-01 兑换 -10",
        "· 2023-01-13 签到 +5",
        "· 2023-01-12 签到 +5",
        "· 2023-01-11 签到 +5",
        "· 2023-01-10 签到 +7",
    ]
    assert await _say(client, settings, _click("oMember1", "POINTS", int(wall.now)), wall) == text


async def test_debt_is_shown_and_expiry_and_adjustments_read_as_words(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    await _say(client, settings, oa_text("积分"), wall)
    member = (await Member.get()).id
    at = datetime(2023, 11, 1, tzinfo=SH)
    await _earn(member, 30, "e1", at, datetime(2025, 1, 1, tzinfo=SH), "referral")
    await points.reverse(member, 50, "refund1", now=at, reason="refund", source="order")
    await points.adjust(
        member, -5, "adj", now=at, expires_at=at + timedelta(days=1), reason="bad data", actor="ops"
    )
    text = await _say(client, settings, oa_text("积分"), wall)
    assert "您的积分：0" in text
    assert "待抵扣欠分：25" in text
    assert "调整 -5" in text
    assert "退款 -50" in text
    assert "邀请奖励 +30" in text
    assert "将过期" not in text


def test_labels_and_the_window_end() -> None:
    assert points_view.label("expire", "expired") == "过期"
    assert points_view.label("adjust", "whatever the operator typed") == "调整"
    assert points_view.label("earn", "signin") == "签到"
    assert points_view.label("earn", "purchase") == "消费"
    assert points_view.label("earn", "something new") == "获得"
    now = datetime(2026, 12, 1, 23, 59, tzinfo=SH)
    end = points_view.window_end(now, SH, 30)
    # a lot expiring at the start of 1 January (the default) is in December's window
    assert datetime(2027, 1, 1, tzinfo=SH) < end < datetime(2027, 1, 1, 0, 0, 1, tzinfo=SH)
