"""Daily sign-in: streaks, cycles, multipliers, rounding, debt, day boundaries, replies."""

from __future__ import annotations

import itertools
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from tortoise import connections

from bot.app import build_services
from bot.config import Settings
from bot.services import points
from bot.services.signin import SignInResult, SignInService
from handlers.signin import times
from storage import db
from storage.models import (
    GrowthEntry,
    Identity,
    Member,
    PointsAllocation,
    PointsEntry,
    PointsLot,
    SignIn,
)
from storage.repos import signin_sqlite
from storage.repos.points import UnknownMember
from tests.conftest import AppMaker, base_config, make_settings
from tests.fakes import FakeWall
from tests.helpers import oa_crypto, oa_text, post_oa, reply_fields

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 6, 10, 9, 0, tzinfo=SH)  # a Wednesday; the member day is the 8th
_codes = itertools.count(1)


BATCH_LOGGER = signin_sqlite.__name__  # logs the statements of a batch


async def new_member(tier: str = "basic") -> int:
    """A fresh member (tier set by hand: the tier engine is not ours)."""
    member = await Member.create(code=f"S{next(_codes):07d}", tier=tier, created_at=T0)
    return int(member.id)


@pytest.fixture
def service(settings: Settings) -> SignInService:
    """The sign-in service on the standard test settings."""
    return SignInService(settings)


@pytest.fixture
async def member(database: str) -> int:
    """One basic member."""
    return await new_member()


async def days(service: SignInService, member_id: int, start: datetime, n: int) -> list[Any]:
    """Sign in on n consecutive days from ``start``."""
    return [await service.sign_in(member_id, start + timedelta(days=i)) for i in range(n)]


async def assert_reconciled() -> None:
    """Both ledger invariants hold for every member."""
    assert await points.reconcile() == []


# --- streaks and rewards ---------------------------------------------------------------


async def test_first_sign_in_and_the_reply_fields(service: SignInService, member: int) -> None:
    result = await service.sign_in(member, T0)
    assert result == SignInResult(
        signed=True,
        day=T0.date(),
        streak=1,
        points=5,
        base=5,
        tier="basic",
        tier_multiplier=1000,
        day_multiplier=1000,
        balance=5,
        tomorrow_points=5,
        tomorrow_day_multiplier=1000,
    )
    row = await SignIn.get(member_id=member)
    assert (row.day, row.streak, row.points) == (T0.date(), 1, 5)
    entry = await PointsEntry.get(member_id=member)
    assert (entry.idempotency_key, entry.kind, entry.amount, entry.base) == (
        f"signin:{member}:2026-06-10",
        "earn",
        5,
        5,
    )
    assert (entry.reason, entry.source, entry.ref) == ("signin", "signin", "2026-06-10")
    lot = await PointsLot.get(member_id=member)
    assert (lot.amount, lot.remaining, lot.entry_id) == (5, 5, entry.id)  # type: ignore[attr-defined]
    assert lot.expires_at == points.lot_expiry(T0, SH)
    assert (await Member.get(id=member)).points_balance == 5
    await assert_reconciled()


async def test_streak_continues_and_breaks(service: SignInService, member: int) -> None:
    run = await days(service, member, T0, 3)
    assert [r.streak for r in run] == [1, 2, 3]
    gap = await service.sign_in(member, T0 + timedelta(days=4))  # skipped the 4th day
    assert (gap.streak, gap.points) == (1, 5)
    assert gap.balance == 20
    await assert_reconciled()


async def test_the_seventh_day_bonus_then_the_cycle_restarts(
    service: SignInService, member: int
) -> None:
    run = await days(service, member, T0, 9)  # 10–18 June: no member day
    assert [r.points for r in run] == [5, 5, 5, 5, 5, 5, 25, 5, 5]
    assert [r.streak for r in run] == list(range(1, 10))
    assert run[5].tomorrow_points == 25  # day 6 announces the bonus
    assert run[6].tomorrow_points == 5
    assert run[-1].balance == 65
    await assert_reconciled()


async def test_member_day_doubles_and_is_announced_the_day_before(
    service: SignInService, member: int
) -> None:
    eve = await service.sign_in(member, datetime(2026, 7, 7, 20, 0, tzinfo=SH))
    assert (eve.tomorrow_points, eve.tomorrow_member_day, eve.member_day) == (10, True, False)
    day = await service.sign_in(member, datetime(2026, 7, 8, 8, 0, tzinfo=SH))
    assert (day.points, day.day_multiplier, day.member_day, day.streak) == (10, 2000, True, 2)
    entry = await PointsEntry.get(idempotency_key=f"signin:{member}:2026-07-08")
    assert (entry.base, entry.tier_multiplier, entry.day_multiplier) == (5, 1000, 2000)
    await assert_reconciled()


@pytest.mark.parametrize(
    ("tier", "expected"),
    [("basic", 5), ("silver", 6), ("gold", 7), ("retired_tier", 5)],  # 7.5 rounds down to 7
)
async def test_tier_multiplier_rounds_down(
    service: SignInService, database: str, tier: str, expected: int
) -> None:
    member_id = await new_member(tier)
    result = await service.sign_in(member_id, T0)
    assert (result.points, result.balance) == (expected, expected)
    entry = await PointsEntry.get(member_id=member_id)
    assert (entry.amount, entry.tier_multiplier) == (expected, result.tier_multiplier)
    await assert_reconciled()


async def test_gold_on_a_member_day_and_on_the_bonus_day(
    service: SignInService, database: str
) -> None:
    member_id = await new_member("gold")
    run = await days(service, member_id, datetime(2026, 7, 2, 9, 0, tzinfo=SH), 7)  # 2–8 July
    assert run[-1].points == 75  # 25 × 1.5 × 2
    assert run[-2].points == 7  # 5 × 1.5 = 7.5 → 7
    assert run[-2].tomorrow_points == 75
    assert (run[-1].tier_multiplier, run[-1].tier_bonus) == (1500, True)
    await assert_reconciled()


# --- duplicates, debt, day boundary, errors --------------------------------------------


async def test_a_second_sign_in_the_same_day_awards_nothing(
    service: SignInService, member: int
) -> None:
    first = await service.sign_in(member, T0)
    again = await service.sign_in(member, T0 + timedelta(hours=5))
    assert (again.signed, again.points, again.streak, again.balance) == (False, 0, 1, 5)
    assert again.tomorrow_points == first.tomorrow_points
    assert await SignIn.filter(member_id=member).count() == 1
    assert await PointsEntry.filter(member_id=member).count() == 1
    await assert_reconciled()


async def test_debt_is_settled_first(service: SignInService, member: int) -> None:
    await points.reverse(member, 3, "refund:o1", now=T0, reason="refund", source="order")
    result = await service.sign_in(member, T0)
    assert (result.signed, result.points, result.balance) == (True, 5, 2)
    assert (await Member.get(id=member)).points_debt == 0
    entry = await PointsEntry.get(idempotency_key=f"signin:{member}:2026-06-10")
    lot = await PointsLot.get(entry_id=entry.id)
    assert (lot.amount, lot.remaining) == (5, 2)
    settlement = await PointsAllocation.get(entry_id=entry.id)
    assert (settlement.amount, settlement.lot_id) == (3, lot.id)  # type: ignore[attr-defined]
    assert (await SignIn.get(member_id=member)).points == 5
    await assert_reconciled()


async def test_debt_larger_than_the_award_and_a_repeat_with_debt(
    service: SignInService, member: int
) -> None:
    await points.reverse(member, 8, "refund:o1", now=T0, reason="refund", source="order")
    first = await service.sign_in(member, T0)
    assert (first.signed, first.points, first.balance) == (True, 5, 0)
    again = await service.sign_in(member, T0 + timedelta(minutes=1))
    assert (again.signed, again.points, again.balance, again.streak) == (False, 0, 0, 1)
    member_row = await Member.get(id=member)
    assert (member_row.points_balance, member_row.points_debt) == (0, 3)
    assert await PointsEntry.filter(member_id=member, kind="earn").count() == 1
    tomorrow = await service.sign_in(member, T0 + timedelta(days=1))
    assert (tomorrow.streak, tomorrow.balance) == (2, 2)  # 3 of its 5 settle the rest
    await assert_reconciled()


async def test_the_business_local_day_decides(service: SignInService, member: int) -> None:
    late = datetime(2026, 6, 15, 23, 59, tzinfo=SH)  # 15:59 UTC
    early = datetime(2026, 6, 16, 0, 1, tzinfo=SH)  # 16:01 UTC, the same UTC date
    first = await service.sign_in(member, late)
    second = await service.sign_in(member, early)
    assert (first.day.isoformat(), second.day.isoformat()) == ("2026-06-15", "2026-06-16")
    assert (second.signed, second.streak) == (True, 2)
    utc_midnight = datetime(2026, 6, 16, 8, 30, tzinfo=SH)  # 00:30 UTC on the 16th
    assert not (await service.sign_in(member, utc_midnight)).signed
    same_day = await service.sign_in(member, datetime(2026, 6, 16, 23, 59, tzinfo=SH))
    assert not same_day.signed
    await assert_reconciled()


async def test_unknown_member_and_naive_time(service: SignInService, database: str) -> None:
    with pytest.raises(UnknownMember):
        await service.sign_in(987654, T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        await service.sign_in(1, datetime(2026, 6, 10, 9, 0))
    assert await SignIn.all().count() == 0


def test_multipliers_for_people() -> None:
    assert [times(v) for v in (1000, 2000, 1500, 1200, 1250, 1005)] == [
        "1",
        "2",
        "1.5",
        "1.2",
        "1.25",
        "1.005",
    ]


# --- the ledger stays exact ------------------------------------------------------------


async def test_reconcile_after_a_mix_of_sign_ins_and_ledger_operations(
    service: SignInService, database: str
) -> None:
    a, b = await new_member(), await new_member("silver")
    end_2027 = datetime(2028, 1, 1, tzinfo=SH)
    for i in range(10):
        now = T0 + timedelta(days=i)
        await service.sign_in(a, now)
        if i % 3 != 2:
            await service.sign_in(b, now)
        await points.earn(
            b, 40, f"order:{i}", now=now, expires_at=end_2027, reason="buy", source="pos"
        )
        if i % 4 == 1:
            await points.spend(a, 7, f"mall:{i}", now=now, reason="mall", source="mall")
            await points.reverse(b, 100, f"refund:{i}", now=now, reason="refund", source="pos")
        await service.sign_in(a, now + timedelta(hours=1))  # a repeat: nothing
        await assert_reconciled()
    await points.expire_due(datetime(2028, 1, 2, tzinfo=SH))
    await assert_reconciled()
    assert await SignIn.filter(member_id=a).count() == 10
    assert await points.outstanding() == 0


# --- round trips -----------------------------------------------------------------------


async def test_round_trips_of_the_common_case_and_of_a_repeat(
    service: SignInService, member: int, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    await service.sign_in(member, T0)  # warm
    with (
        caplog.at_level(logging.DEBUG, logger="tortoise.db_client"),
        caplog.at_level(logging.DEBUG, logger=BATCH_LOGGER),
    ):
        caplog.clear()
        signed = await service.sign_in(member, T0 + timedelta(days=1))
        signing = _statements(caplog)
        caplog.clear()
        await service.sign_in(member, T0 + timedelta(days=1))
        repeat = _statements(caplog)
    assert signed.signed
    if db.is_sqlite(database):
        # in-process: one transaction (BEGIN/COMMIT are not logged) of four statements
        assert (signing, repeat) == (4, 2)
    else:
        assert (signing, repeat) == (1, 1)  # one autocommit statement: one round trip


def _statements(caplog: pytest.LogCaptureFixture) -> int:
    return sum(1 for r in caplog.records if r.name in ("tortoise.db_client", BATCH_LOGGER))


# --- through the callback --------------------------------------------------------------


def _click(openid: str, key: str, at: int) -> str:
    return (
        f"<xml><ToUserName><![CDATA[gh_brand]]></ToUserName><FromUserName><![CDATA[{openid}]]>"
        f"</FromUserName><CreateTime>{at}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[{key}]]></EventKey></xml>"
    )


async def test_sign_in_by_text_and_by_menu_through_the_callback(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    crypto = oa_crypto(settings)

    async def say(plaintext: str) -> str:
        resp = await post_oa(client, settings, plaintext, timestamp=int(wall.now))
        assert resp.status == 200
        return str(reply_fields(crypto, await resp.text())["Content"])

    done = await say(oa_text("签到", openid="oSigner"))
    assert "签到成功，获得 5 积分" in done
    assert "连续签到 1 天" in done
    assert "当前积分：5" in done
    assert "明天签到可得 5 积分" in done
    assert "会员日" not in done
    wall.advance(60)
    again = await say(_click("oSigner", "SIGNIN", int(wall.now)))
    assert "今天已经签到过了" in again
    assert "当前积分：5" in again
    wall.advance(86_400)
    other = await say(oa_text("打卡", openid="oSigner"))
    assert "连续签到 2 天" in other
    assert await SignIn.all().count() == 2
    await _flush(client)  # resolve() records every message and click as activity
    assert (await Member.get()).last_active_at == datetime.fromtimestamp(wall.now, UTC)
    await assert_reconciled()


async def test_member_day_reply_names_the_multiplier(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    wall.now = datetime(2026, 7, 8, 12, 0, tzinfo=SH).timestamp()
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    resp = await post_oa(client, settings, oa_text("签到", openid="oDay"), timestamp=int(wall.now))
    text = reply_fields(oa_crypto(settings), await resp.text())["Content"]
    assert "获得 10 积分" in text
    assert "今天是会员日，签到积分 ×2" in text


async def _sign_in_an_hour_after_joining(
    make_client: AppMaker, wall: FakeWall, database: str
) -> Any:
    """帮助 (the member, created; its activity flushed), an hour later 签到; the client."""
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    crypto = oa_crypto(settings)

    async def say(text: str) -> str:
        resp = await post_oa(
            client, settings, oa_text(text, openid="oActive"), timestamp=int(wall.now)
        )
        return str(reply_fields(crypto, await resp.text())["Content"])

    assert "可用指令" in await say("帮助")
    await _flush(client)
    wall.advance(3600)
    assert "签到成功" in await say("签到")
    return client


async def test_the_sign_in_moves_last_active_at_in_its_own_write(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    await _sign_in_an_hour_after_joining(make_client, wall, database)
    # before any activity flush: the sign-in's batch wrote it
    assert (await Member.get()).last_active_at == datetime.fromtimestamp(wall.now, UTC)


@pytest.mark.postgres
async def test_on_postgres_the_sign_in_moves_last_active_at_so_the_activity_flush_has_none(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    client = await _sign_in_an_hour_after_joining(make_client, wall, database)
    conn = connections.get("default")

    async def version() -> tuple[str, datetime]:
        # xmin: the transaction that wrote the row's current version
        _, rows = await conn.execute_query("SELECT xmin::text AS v, last_active_at FROM member")
        return rows[0]["v"], rows[0]["last_active_at"]

    signed, active = await version()
    assert active == datetime.fromtimestamp(wall.now, UTC)  # written by the sign-in itself
    await _flush(client)
    assert await version() == (signed, active)  # the flush wrote no new member version
    identity = await Identity.get(value="oActive")
    assert identity.last_message_at == datetime.fromtimestamp(wall.now, UTC)


async def _flush(client: Any) -> None:
    from bot.appkeys import SERVICES

    await client.app[SERVICES].members.activity.flush()


async def test_growth_per_sign_in_raises_the_tier_once_per_day(database: str) -> None:
    settings = make_settings(
        base_config(database),
        signin={"growth": 1000},
        membership={
            "tiers": [
                {"code": "basic", "name": "普卡", "threshold": 0},
                {"code": "silver", "name": "银卡", "threshold": 2000, "multiplier": 2.0},
            ]
        },
    )
    services = build_services(settings)
    service = services.signin
    member_id = await new_member()
    first = await service.sign_in(member_id, T0)
    again = await service.sign_in(member_id, T0 + timedelta(hours=1))
    second = await service.sign_in(member_id, T0 + timedelta(days=1))
    third = await service.sign_in(member_id, T0 + timedelta(days=2))
    member = await Member.get(id=member_id)
    assert (member.growth, member.tier) == (3000, "silver")
    assert (first.points, again.points, second.points) == (5, 0, 5)
    assert third.points == 10  # the tier reached by yesterday's growth doubles today's
    assert await GrowthEntry.filter(member_id=member_id, source="signin").count() == 3
    await assert_reconciled()
