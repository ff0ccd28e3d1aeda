"""The points mall's service: redeem in one transaction, every refusal changes nothing,
repeats under one key answer the first redemption, the config upsert keeps stock."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.clock import BusinessClock
from bot.config import Settings
from bot.services import points
from bot.services.mall import MallService
from storage.models import Coupon, Member, PointsEntry, PointsLot, Redemption, Reward
from storage.repos import coupons
from tests.conftest import base_config, make_settings

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 6, 10, 15, 30, tzinfo=SH)
FAR = datetime(2030, 1, 1, tzinfo=SH)
_codes = itertools.count(1)


def reward_config(**values: Any) -> dict[str, Any]:
    """A ``[[rewards]]`` entry: C10, 1000 points for 10 yuan off, stock 3, two per member."""
    return {
        "code": "C10",
        "name": "10元无门槛券",
        "cost_points": 1000,
        "stock": 3,
        "per_member_limit": 2,
        "coupon_value_fen": 1000,
        "coupon_valid_days": 30,
        **values,
    }


def mall_settings(database: str, *rewards: dict[str, Any]) -> Settings:
    """Test settings with these rewards (C10 by default)."""
    raw = base_config(database)
    raw["rewards"] = list(rewards) or [reward_config()]
    return make_settings(raw)


async def synced(settings: Settings) -> MallService:
    """A mall on these settings with its rewards upserted (as the app does on start)."""
    mall = MallService(settings, BusinessClock(settings.tz))
    await mall.sync_config(NOW)
    return mall


async def member_with(balance: int) -> int:
    """A new member holding ``balance`` points in one lot."""
    member = await Member.create(code=f"M{next(_codes):07d}", created_at=NOW)
    if balance:
        await points.earn(
            member.id, balance, f"seed:{member.id}", now=NOW, expires_at=FAR, reason="t", source="t"
        )
    return int(member.id)


async def snapshot(member_id: int) -> tuple[Any, ...]:
    """Everything a redemption could touch."""
    member = await Member.get(id=member_id)
    stocks = await Reward.all().order_by("code").values_list("code", "stock")
    lots = await PointsLot.filter(member_id=member_id).order_by("id").values_list("remaining")
    return (
        member.points_balance,
        member.points_debt,
        tuple(stocks),
        tuple(lots),
        await PointsEntry.all().count(),
        await Redemption.all().count(),
        await Coupon.all().count(),
    )


async def test_redeem_spends_points_takes_stock_and_issues_a_coupon(database: str) -> None:
    mall, member = await synced(mall_settings(database)), await member_with(1500)
    result = await mall.redeem(member, "c10", "redeem:k1", NOW)
    assert result.issued is not None
    assert not result.duplicate
    issued = result.issued
    assert (issued.reward_code, issued.points, issued.value_fen) == ("C10", 1000, 1000)
    assert result.balance == 500
    assert (await Reward.get(code="C10")).stock == 2
    assert len(issued.coupon_code) == coupons.CODE_LENGTH
    assert set(issued.coupon_code) <= set(coupons.ALPHABET)
    assert not set(issued.coupon_code) & set("0O1I")
    coupon = await Coupon.get(code=issued.coupon_code)
    assert (coupon.member_id, coupon.state, coupon.value_fen) == (member, "issued", 1000)  # type: ignore[attr-defined]
    assert coupon.valid_from == NOW
    # 30 days on, to the end of that business day
    assert coupon.valid_to == datetime(2026, 7, 11, tzinfo=SH)
    spend = await PointsEntry.get(idempotency_key="redeem:k1")
    assert (spend.kind, spend.amount, spend.source) == ("spend", -1000, "mall")
    redemption = await Redemption.get(idempotency_key="redeem:k1")
    assert redemption.entry_id == spend.id
    assert await points.reconcile() == []


async def test_the_same_key_answers_the_first_redemption(database: str) -> None:
    mall, member = await synced(mall_settings(database)), await member_with(5000)
    first = await mall.redeem(member, "C10", "redeem:same", NOW)
    before = await snapshot(member)
    again = await mall.redeem(member, "C10", "redeem:same", NOW + timedelta(seconds=5))
    assert again.duplicate
    assert again.issued == first.issued
    assert await snapshot(member) == before


async def test_a_discount_coupon_stores_per_mille(database: str) -> None:
    d85 = reward_config(code="d85", coupon_value_fen=0, coupon_discount=0.85, stock=None)
    mall, member = await synced(mall_settings(database, d85)), await member_with(1000)
    result = await mall.redeem(member, "D85", "redeem:d", NOW)
    assert result.issued is not None
    assert (result.issued.discount, result.issued.value_fen) == (850, 0)
    assert (await Reward.get(code="D85")).stock is None  # unlimited stays unlimited


@pytest.mark.parametrize(
    ("reason", "balance", "reward", "code"),
    [
        ("insufficient", 999, {}, "C10"),
        ("out_of_stock", 5000, {"stock": 0}, "C10"),
        ("unknown", 5000, {}, "NOPE"),
        ("unavailable", 5000, {"active": False}, "C10"),
        ("unavailable", 5000, {"available_from": NOW + timedelta(hours=1)}, "C10"),
        ("unavailable", 5000, {"available_to": NOW}, "C10"),
    ],
)
async def test_a_refusal_changes_nothing(
    database: str, reason: str, balance: int, reward: dict[str, Any], code: str
) -> None:
    if "available_to" in reward:
        reward = {**reward, "available_from": NOW - timedelta(days=1)}
    mall = await synced(mall_settings(database, reward_config(**reward)))
    member = await member_with(balance)
    before = await snapshot(member)
    result = await mall.redeem(member, code, "redeem:no", NOW)
    assert (result.issued, result.refused) == (None, reason)
    assert await snapshot(member) == before
    assert await PointsEntry.filter(idempotency_key="redeem:no").count() == 0
    assert await points.reconcile() == []


async def test_insufficient_points_rolls_back_the_stock_decrement(database: str) -> None:
    # The stock is decremented before the ledger refuses the spend: the whole
    # transaction (on PostgreSQL: the savepoint and the outer transaction) rolls back.
    mall = await synced(mall_settings(database, reward_config(stock=1)))
    poor, rich = await member_with(10), await member_with(1000)
    refused = await mall.redeem(poor, "C10", "redeem:poor", NOW)
    assert (refused.refused, refused.cost, refused.balance) == ("insufficient", 1000, 10)
    assert (await Reward.get(code="C10")).stock == 1
    assert (await mall.redeem(rich, "C10", "redeem:rich", NOW)).issued is not None
    assert (await Reward.get(code="C10")).stock == 0


async def test_points_in_lots_past_expiry_are_not_spendable(database: str) -> None:
    mall = await synced(mall_settings(database))
    member = int((await Member.create(code="MEXPIRED", created_at=NOW)).id)
    await points.earn(
        member, 2000, "old", now=NOW - timedelta(days=10), expires_at=NOW, reason="t", source="t"
    )
    before = await snapshot(member)
    result = await mall.redeem(member, "C10", "redeem:exp", NOW)
    assert result.refused == "insufficient"
    assert await snapshot(member) == before


async def test_the_per_member_limit_counts_redemptions(database: str) -> None:
    mall = await synced(mall_settings(database, reward_config(stock=None)))
    member, other = await member_with(5000), await member_with(5000)
    for n in range(2):
        assert (await mall.redeem(member, "C10", f"redeem:l{n}", NOW)).issued is not None
    before = await snapshot(member)
    over = await mall.redeem(member, "C10", "redeem:l3", NOW)
    assert (over.refused, over.limit) == ("limit", 2)
    assert await snapshot(member) == before
    assert (await mall.redeem(other, "C10", "redeem:o1", NOW)).issued is not None


async def test_catalogue_lists_what_is_on_offer(database: str) -> None:
    settings = mall_settings(
        database,
        reward_config(),
        reward_config(code="OFF", active=False),
        reward_config(code="LATER", available_from=NOW + timedelta(days=1)),
        reward_config(code="D85", coupon_value_fen=0, coupon_discount=0.85, stock=None),
    )
    mall, member = await synced(settings), await member_with(1234)
    found = await mall.catalogue(member, NOW)
    assert [r.code for r in found.rewards] == ["C10", "D85"]  # config order
    assert found.balance == 1234


async def test_config_upsert_updates_but_never_refills_stock(database: str) -> None:
    mall = await synced(mall_settings(database))
    member = await member_with(5000)
    await mall.redeem(member, "C10", "redeem:u1", NOW)
    assert (await Reward.get(code="C10")).stock == 2
    # a restart with changed settings: the name and cost follow, the stock does not
    changed = mall_settings(database, reward_config(name="新名字", cost_points=800, stock=50))
    assert await MallService(changed, BusinessClock(SH)).sync_config(NOW) == (0, 1)
    reward = await Reward.get(code="C10")
    assert (reward.name, reward.cost_points, reward.stock, reward.source) == (
        "新名字",
        800,
        2,
        "config",
    )


async def test_config_upsert_leaves_rewards_from_the_api_alone(database: str) -> None:
    await Reward.create(
        code="C10",
        name="API 券",
        cost_points=5,
        stock=7,
        coupon_value_fen=100,
        source="api",
        created_at=NOW,
        updated_at=NOW,
    )
    await synced(mall_settings(database))
    reward = await Reward.get(code="C10")
    assert (reward.name, reward.cost_points, reward.stock) == ("API 券", 5, 7)


async def test_a_coupon_code_clash_draws_again(database: str) -> None:
    member = await member_with(0)
    draws = iter(["AAAAAAAAAA", "AAAAAAAAAA", "BBBBBBBBBB"])
    common: dict[str, Any] = {
        "member_id": member,
        "name": "x",
        "value_fen": 100,
        "discount": 0,
        "valid_from": NOW,
        "valid_to": FAR,
        "now": NOW,
    }
    first = await coupons.issue(**common, code=lambda: next(draws))
    second = await coupons.issue(**common, code=lambda: next(draws))
    assert (first.code, second.code) == ("AAAAAAAAAA", "BBBBBBBBBB")
    assert await Coupon.all().count() == 2


def test_new_codes_use_the_unambiguous_alphabet() -> None:
    drawn = {coupons.new_code() for _ in range(200)}
    assert len(drawn) == 200
    assert all(len(c) == 10 and set(c) <= set(coupons.ALPHABET) for c in drawn)
    assert not set("".join(drawn)) & set("0O1I")


async def test_my_coupons_are_the_issued_ones_still_valid(database: str) -> None:
    mall, member = await synced(mall_settings(database)), await member_with(0)
    for code, end, state in [
        ("LIVE222222", timedelta(days=3), "issued"),
        ("SOON222222", timedelta(hours=1), "issued"),
        ("PAST222222", timedelta(seconds=0), "issued"),  # due, not yet marked expired
        ("USED222222", timedelta(days=3), "used"),
        ("VOID222222", timedelta(days=3), "voided"),
    ]:
        await coupons.issue(
            member_id=member,
            name="x",
            value_fen=100,
            discount=0,
            valid_from=NOW - timedelta(days=1),
            valid_to=NOW + end,
            now=NOW,
            code=lambda c=code: c,
        )
        await Coupon.filter(code=code).update(state=state)
    assert [c.code for c in await mall.coupons(member, NOW)] == ["SOON222222", "LIVE222222"]
