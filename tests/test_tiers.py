"""Growth and tiers: upgrades on crossing, duplicates, races, the yearly evaluation, CLI."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.app import Overrides, build_services
from bot.appkeys import SERVICES
from bot.cli import main
from bot.clock import BusinessClock
from bot.config import Settings
from bot.context import Services
from bot.services.tiers import KeyReused, UnknownMember, last_evaluation
from storage import db
from storage.cache import Cache
from storage.keys import KeyBuilder
from storage.models import AuditLog, GrowthEntry, Member, OutboxMessage
from tests.conftest import TEST_DB, AppMaker, _truncate_all, base_config, make_settings
from tests.fakes import FakeWall
from tests.helpers import oa_crypto, oa_text, post_oa, reply_fields

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=SH)
EVAL_2027 = datetime(2027, 1, 1, 9, 0, tzinfo=SH)
RACERS = 40
_codes = itertools.count(1)


async def new_member(created_at: datetime = datetime(2024, 1, 1, tzinfo=SH)) -> int:
    """A fresh 普卡 member with no growth."""
    member = await Member.create(code=f"T{next(_codes):07d}", created_at=created_at)
    return int(member.id)


def services_for(settings: Settings, wall: FakeWall, cache: Cache, keys: KeyBuilder) -> Services:
    """Services on the pinned wall clock (no API clients needed: notices only enqueue)."""
    clock = BusinessClock(settings.tz, allow_offset=True, source=wall.time)
    return build_services(settings, Overrides(wall=wall, clock=clock, cache=cache, keys=keys))


@pytest.fixture
def svc(settings: Settings, wall: FakeWall, cache: Cache, keys: KeyBuilder) -> Services:
    """Services with the default tiers (普卡 0, 银卡 3000, 金卡 6000)."""
    return services_for(settings, wall, cache, keys)


async def grow(svc: Services, member_id: int, amount: int, key: str, now: datetime = T0) -> str:
    """Add growth and return the tier after it."""
    result = await svc.tiers.add_growth(
        member_id, amount, key, now=now, reason="purchase", source="order"
    )
    return result.tier


async def tier_of(member_id: int) -> tuple[int, str]:
    """(growth, tier) as stored."""
    member = await Member.get(id=member_id)
    return member.growth, member.tier


async def test_crossing_a_threshold_upgrades_at_once_and_sends_a_notice(svc: Services) -> None:
    member_id = await new_member()
    assert await grow(svc, member_id, 2999, "o1") == "basic"
    result = await svc.tiers.add_growth(
        member_id, 1, "o2", now=T0, reason="purchase", source="order"
    )
    assert (result.growth, result.tier, result.previous_tier, result.upgraded) == (
        3000,
        "silver",
        "basic",
        True,
    )
    assert await tier_of(member_id) == (3000, "silver")
    audit = await AuditLog.get(action="tier.upgrade")
    assert (audit.target, audit.detail["from"], audit.detail["to"]) == (
        f"member:{member_id}",
        "basic",
        "silver",
    )
    notices = await OutboxMessage.filter(member_id=member_id).values_list(
        "idempotency_key", flat=True
    )
    assert notices == [f"notify:tier:{member_id}:up:o2"]  # unreachable here: no OA identity


async def test_one_big_entry_skips_a_tier(svc: Services) -> None:
    member_id = await new_member()
    result = await svc.tiers.add_growth(
        member_id, 6500, "big", now=T0, reason="purchase", source="order"
    )
    assert (result.previous_tier, result.tier) == ("basic", "gold")
    assert await AuditLog.filter(action="tier.upgrade").count() == 1
    assert await OutboxMessage.filter(member_id=member_id).count() == 1


async def test_a_repeated_key_is_a_no_op_returning_the_first_entry(svc: Services) -> None:
    member_id = await new_member()
    first = await svc.tiers.add_growth(
        member_id, 3500, "dup", now=T0, reason="purchase", source="order"
    )
    again = await svc.tiers.add_growth(
        member_id, 3500, "dup", now=T0, reason="purchase", source="order"
    )
    assert again.duplicate
    assert not first.duplicate
    assert (again.entry_id, again.tier, again.previous_tier) == (first.entry_id, "silver", "basic")
    assert await tier_of(member_id) == (3500, "silver")
    assert await GrowthEntry.filter(member_id=member_id).count() == 1
    assert await OutboxMessage.filter(member_id=member_id).count() == 1
    with pytest.raises(KeyReused):
        await grow(svc, member_id, 10, "dup")


async def test_unknown_member_and_bad_amounts_are_refused(svc: Services) -> None:
    with pytest.raises(UnknownMember):
        await grow(svc, 999_999, 10, "nobody")
    member_id = await new_member()
    with pytest.raises(ValueError, match="positive"):
        await grow(svc, member_id, 0, "zero")
    with pytest.raises(ValueError, match="timezone-aware"):
        await grow(svc, member_id, 5, "naive", now=datetime(2026, 1, 1))
    assert await GrowthEntry.all().count() == 0


async def test_a_refund_lowers_growth_but_not_the_tier(svc: Services) -> None:
    member_id = await new_member()
    await grow(svc, member_id, 3200, "order")
    result = await svc.tiers.reverse_growth(
        member_id, 1000, "refund", now=T0, reason="refund", source="order"
    )
    assert (result.growth, result.tier, result.upgraded) == (2200, "silver", False)
    assert await tier_of(member_id) == (2200, "silver")
    again = await svc.tiers.reverse_growth(
        member_id, 1000, "refund", now=T0, reason="refund", source="order"
    )
    assert again.duplicate
    assert await tier_of(member_id) == (2200, "silver")


@pytest.fixture
async def wide_pool(database: str) -> AsyncIterator[str]:
    """The same database behind a pool as wide as the races (asyncpg's default is 5)."""
    if db.is_sqlite(database):
        yield database  # one connection whatever the pool: transactions take turns
        return
    await db.close_db()
    url = f"{database}{'&' if '?' in database else '?'}minsize=1&maxsize={RACERS + 10}"
    await db.open_db(url)
    yield url


async def race(svc: Services, member_id: int) -> None:
    """RACERS entries of 100 growth at once (4000 in all: one upgrade to 银卡)."""
    await asyncio.gather(*(grow(svc, member_id, 100, f"race:{i}") for i in range(RACERS)))


async def assert_exact(member_id: int) -> None:
    """The race assertion: every entry counted once, one upgrade."""
    assert await tier_of(member_id) == (RACERS * 100, "silver")
    assert await AuditLog.filter(action="tier.upgrade").count() == 1


async def test_concurrent_growth_is_exact(wide_pool: str, svc: Services) -> None:
    member_id = await new_member()
    await race(svc, member_id)
    await assert_exact(member_id)
    assert await OutboxMessage.filter(member_id=member_id).count() == 1


@pytest.mark.postgres
async def test_the_race_assertion_catches_a_naive_read_modify_write(wide_pool: str) -> None:
    member_id = await new_member()
    barrier = asyncio.Barrier(RACERS)

    async def naive(i: int) -> None:
        member = await Member.get(id=member_id)
        await barrier.wait()  # every racer has read growth 0
        member.growth += 100
        await member.save(update_fields=["growth"])

    await asyncio.gather(*(naive(i) for i in range(RACERS)))
    with pytest.raises(AssertionError):
        await assert_exact(member_id)


@pytest.mark.postgres
async def test_concurrent_duplicates_write_one_entry(wide_pool: str, svc: Services) -> None:
    member_id = await new_member()
    results = await asyncio.gather(*(grow(svc, member_id, 3000, "same") for _ in range(20)))
    assert results == ["silver"] * 20
    assert await GrowthEntry.filter(member_id=member_id).count() == 1
    assert await tier_of(member_id) == (3000, "silver")


# --- the yearly evaluation ---------------------------------------------------------------

OLD = datetime(2025, 6, 1, 12, 0, tzinfo=SH)  # before the 2026 window
RECENT = datetime(2026, 6, 1, 12, 0, tzinfo=SH)  # inside [2026-01-01, 2027-01-01)


async def member_with(svc: Services, name: str, *entries: tuple[int, datetime]) -> int:
    """A member whose growth came from these (amount, when) entries."""
    member_id = await new_member()
    for i, (amount, when) in enumerate(entries):
        await grow(svc, member_id, amount, f"{name}:{i}", now=when)
    return member_id


async def test_evaluation_keeps_drops_one_tier_and_never_below_the_lowest(svc: Services) -> None:
    kept = await member_with(svc, "kept", (3000, RECENT))
    kept_gold = await member_with(svc, "kept_gold", (2000, OLD), (6000, RECENT))
    silver_idle = await member_with(svc, "silver", (3500, OLD))
    gold_some = await member_with(svc, "gold", (6000, OLD), (3500, RECENT))
    gold_idle = await member_with(svc, "gold0", (7000, OLD))
    basic = await member_with(svc, "basic", (100, OLD))
    fresh = await member_with(svc, "fresh", (3000, datetime(2027, 1, 1, 0, 30, tzinfo=SH)))
    summary = await svc.tiers.evaluate(EVAL_2027)
    assert summary.evaluation_date == date(2027, 1, 1)
    assert (await tier_of(kept))[1] == "silver"  # 3000 in the window: silver's threshold
    assert (await tier_of(kept_gold))[1] == "gold"
    assert (await tier_of(silver_idle))[1] == "basic"
    assert (await tier_of(gold_some))[1] == "silver"  # 3500 < 6000: down one, not two
    assert (await tier_of(gold_idle))[1] == "silver"
    assert (await tier_of(basic))[1] == "basic"
    assert (await tier_of(fresh))[1] == "silver"  # reached on the day, after the cut-off
    assert await tier_of(gold_idle) == (7000, "silver")  # growth is never reset
    assert (summary.kept, summary.dropped) == (3, 3)
    assert summary.dropped_from == {"silver": 1, "gold": 2}
    assert summary.tiers == {"basic": 2, "silver": 4, "gold": 1}
    drops = await AuditLog.filter(action="tier.drop").values_list("target", flat=True)
    assert sorted(drops) == sorted(f"member:{m}" for m in (silver_idle, gold_some, gold_idle))
    assert await OutboxMessage.filter(idempotency_key__contains=":eval:2027-01-01").count() == 3


async def test_evaluating_twice_for_the_same_day_changes_nothing(svc: Services) -> None:
    gold_idle = await member_with(svc, "gold0", (7000, OLD))
    first = await svc.tiers.evaluate(EVAL_2027)
    later = await svc.tiers.evaluate(datetime(2027, 3, 1, tzinfo=SH))  # same evaluation day
    assert (await tier_of(gold_idle))[1] == "silver"
    assert later.already_done
    assert not first.already_done
    assert (later.kept, later.dropped, later.tiers) == (first.kept, first.dropped, first.tiers)
    assert await AuditLog.filter(action="tier.drop").count() == 1
    assert await AuditLog.filter(action="tier.evaluate").count() == 1
    assert await OutboxMessage.filter(idempotency_key__contains=":eval:").count() == 1


async def test_the_retention_threshold_decides_and_may_differ_from_entry(
    database: str, wall: FakeWall, cache: Cache, keys: KeyBuilder
) -> None:
    tiers = [
        {"code": "basic", "name": "普卡", "threshold": 0},
        {"code": "silver", "name": "银卡", "threshold": 3000, "retain": 1000},
        {"code": "gold", "name": "金卡", "threshold": 6000},
    ]
    settings = make_settings(base_config(database), membership={"tiers": tiers})
    svc = services_for(settings, wall, cache, keys)
    enough = await member_with(svc, "enough", (3000, OLD), (1000, RECENT))
    short = await member_with(svc, "short", (3000, OLD), (999, RECENT))
    await svc.tiers.evaluate(EVAL_2027)
    assert (await tier_of(enough))[1] == "silver"
    assert (await tier_of(short))[1] == "basic"


def test_the_evaluation_day_is_the_latest_on_or_before_today(settings: Settings) -> None:
    membership = settings.membership
    assert last_evaluation(membership, date(2027, 1, 1)) == date(2027, 1, 1)
    assert last_evaluation(membership, date(2026, 12, 31)) == date(2026, 1, 1)


# --- the CLI -----------------------------------------------------------------------------


def _config(tmp_path: Path, url: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    return str(path)


def test_cli_refuses_a_bad_at(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, db_url)
    assert main(["--config", config, "tiers", "evaluate", "--at", "next tuesday"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--at 'next tuesday' is not an ISO date or datetime" in err


def test_cli_evaluates_at_the_given_moment(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def seed() -> int:
        await db.open_db(db_url)
        if TEST_DB:
            await _truncate_all()
        member = await Member.create(code="CLI00001", created_at=OLD, tier="gold", growth=7000)
        await db.close_db()
        return int(member.id)

    async def tier(member_id: int) -> str:
        await db.open_db(db_url)
        found = (await Member.get(id=member_id)).tier
        await db.close_db()
        return found

    member_id = asyncio.run(seed())
    config = _config(tmp_path, db_url)
    assert main(["--config", config, "tiers", "evaluate", "--at", "2027-01-01T09:00"]) == 0
    out = capsys.readouterr().out
    assert "evaluation 2027-01-01; kept 0, dropped 1" in out
    assert "银卡 silver: 1 (dropped from here" not in out
    assert "金卡 gold: 0 (dropped from here: 1)" in out
    assert asyncio.run(tier(member_id)) == "silver"
    assert main(["--config", config, "tiers", "evaluate", "--at", "2027-06-01"]) == 0
    assert "already applied" in capsys.readouterr().out
    assert asyncio.run(tier(member_id)) == "silver"


# --- 会员 / 等级 in chat -------------------------------------------------------------------


def _click(openid: str, key: str, at: int) -> str:
    return (
        f"<xml><ToUserName><![CDATA[gh_brand]]></ToUserName><FromUserName><![CDATA[{openid}]]>"
        f"</FromUserName><CreateTime>{at}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[{key}]]></EventKey></xml>"
    )


async def test_the_tier_command_shows_standing_and_the_next_evaluation(
    make_client: AppMaker, settings: Settings, wall: FakeWall
) -> None:
    client = await make_client(settings)
    crypto = oa_crypto(settings)
    first = await post_oa(client, settings, oa_text("会员", msg_id=1), timestamp=int(wall.now))
    text = reply_fields(crypto, await first.text())["Content"]
    assert "您的会员等级：普卡" in text
    assert "成长值：0" in text
    assert "再获得 3000 成长值即可升级为银卡" in text
    assert "签到与消费积分" in text
    assert "下次等级评定日：2024-01-01" in text  # the pinned wall clock is November 2023
    member = await Member.get()
    await client.app[SERVICES].tiers.add_growth(
        member.id, 6500, "order:1", now=T0, reason="purchase", source="order"
    )
    notice = await OutboxMessage.get(member_id=member.id)
    assert (notice.channel, notice.status) == ("oa_cs", "pending")  # they wrote just now
    assert "升级为金卡" in notice.payload["text"]
    wall.advance(5)
    clicked = await post_oa(
        client, settings, _click("oMember1", "TIER", int(wall.now)), timestamp=int(wall.now)
    )
    text = reply_fields(crypto, await clicked.text())["Content"]
    assert "您的会员等级：金卡" in text
    assert "成长值：6500" in text
    assert "已是最高等级" in text
    assert "专属客服" in text


async def test_two_evaluations_at_once_apply_once(wide_pool: str, svc: Services) -> None:
    gold_idle = await member_with(svc, "gold0", (7000, OLD))
    runs = await asyncio.gather(svc.tiers.evaluate(EVAL_2027), svc.tiers.evaluate(EVAL_2027))
    assert sorted(r.already_done for r in runs) == [False, True]
    assert await tier_of(gold_idle) == (7000, "silver")
    assert await AuditLog.filter(action="tier.drop").count() == 1


async def test_a_retry_after_a_lost_notice_enqueues_it_again(svc: Services) -> None:
    member_id = await new_member()
    await grow(svc, member_id, 3000, "order:lost")
    await OutboxMessage.filter(member_id=member_id).delete()  # died before the notice
    later = T0.replace(hour=18)
    again = await svc.tiers.add_growth(
        member_id, 3000, "order:lost", now=later, reason="purchase", source="order"
    )
    assert (again.duplicate, again.previous_tier, again.tier) == (True, "basic", "silver")
    keys = await OutboxMessage.filter(member_id=member_id).values_list("idempotency_key", flat=True)
    assert keys == [f"notify:tier:{member_id}:up:order:lost"]
    await grow(svc, member_id, 3000, "order:lost")
    assert await OutboxMessage.filter(member_id=member_id).count() == 1
