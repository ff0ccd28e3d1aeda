"""Orders: exact pricing with the multipliers recorded, idempotency, refunds that reverse
exactly, debt after a spend, mobile-only members, coupons restored, racing refunds."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.app import Overrides, build_services
from bot.clock import BusinessClock
from bot.config import Settings
from bot.context import Services
from bot.services import points
from bot.services.orders import (
    MemberLookup,
    NewOrder,
    OrderConflict,
    RefundConflict,
    RefundExceedsOrder,
    UnknownMember,
    fingerprint,
)
from bot.services.pii import MobileVault
from storage.cache import Cache
from storage.keys import KeyBuilder
from storage.models import (
    AuditLog,
    Coupon,
    GrowthEntry,
    Identity,
    Member,
    Order,
    OrderRefund,
    OutboxMessage,
    PointsEntry,
)
from tests.cli_support import HMAC_KEY, MOBILE_KEY
from tests.conftest import OA_APPID, base_config, make_settings
from tests.fakes import FakeWall
from tests.test_signin_concurrency import wide_pool  # noqa: F401 (a fixture)

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 6, 10, 9, 0, tzinfo=SH)  # not a member day (the 8th)
MEMBER_DAY = datetime(2026, 6, 8, 20, 30, tzinfo=SH)
_codes = itertools.count(1)


def order_settings(db_url: str) -> Settings:
    return make_settings(
        base_config(db_url), security={"mobile_key": MOBILE_KEY, "mobile_hmac_key": HMAC_KEY}
    )


def services_on(settings: Settings, wall: FakeWall, cache: Cache, keys: KeyBuilder) -> Services:
    clock = BusinessClock(settings.tz, allow_offset=True, source=wall.time)
    return build_services(settings, Overrides(wall=wall, clock=clock, cache=cache, keys=keys))


@pytest.fixture
async def svc(database: str, wall: FakeWall, cache: Cache, keys: KeyBuilder) -> Services:
    wall.now = T0.timestamp()
    return services_on(order_settings(database), wall, cache, keys)


async def member(tier: str = "basic", openid: str = "") -> Member:
    made = await Member.create(code=f"ORD{next(_codes):05d}", created_at=T0, tier=tier)
    if openid:
        await Identity.create(
            kind="oa_openid", app=OA_APPID, value=openid, member_id=made.id, created_at=T0
        )
    return made


def by_code(m: Member) -> MemberLookup:
    return MemberLookup("member_code", m.code)


def order(ext: str, who: MemberLookup, amount: int, paid_at: datetime = T0, **kw: str) -> NewOrder:
    return NewOrder(ext, who, amount, paid_at, kw.get("channel", "pos"), kw.get("store", "S1"))


async def reload(m: Member) -> Member:
    return await Member.get(id=m.id)


async def test_points_and_growth_with_tier_and_member_day_recorded(svc: Services) -> None:
    silver = await member("silver")
    view = await svc.orders.create(order("A-1", by_code(silver), 12345, MEMBER_DAY), "t")
    # base floor(123.45 × 1) = 123; × 1.2 (银卡) × 2 (会员日) = 295.2 → 295
    assert (view.base, view.tier_multiplier, view.day_multiplier) == (123, 1200, 2000)
    assert (view.points, view.growth, view.balance, view.duplicate) == (295, 123, 295, False)
    entry = await PointsEntry.get(idempotency_key="order:A-1")
    assert (entry.base, entry.tier_multiplier, entry.day_multiplier) == (123, 1200, 2000)
    assert entry.amount == 295
    after = await reload(silver)
    assert (after.points_balance, after.growth) == (295, 123)
    assert after.last_active_at == MEMBER_DAY
    plain = await svc.orders.create(order("A-2", by_code(silver), 12345, T0), "t")
    assert (plain.points, plain.day_multiplier) == (147, 1000)  # 123 × 1.2 = 147.6
    assert await points.reconcile() == []


async def test_member_day_follows_the_business_date_of_paid_at(svc: Services) -> None:
    m = await member()
    # 2026-06-07 16:30 UTC is 8 June 00:30 in Shanghai: the member day
    late = datetime(2026, 6, 7, 16, 30, tzinfo=ZoneInfo("UTC"))
    view = await svc.orders.create(order("D-1", by_code(m), 1000, late), "t")
    assert (view.day_multiplier, view.points) == (2000, 20)


async def test_points_per_yuan_rates_are_exact(
    database: str, wall: FakeWall, cache: Cache, keys: KeyBuilder
) -> None:
    wall.now = T0.timestamp()
    settings = make_settings(base_config(database), points={"points_per_yuan": 0.1})
    svc = services_on(settings, wall, cache, keys)
    m = await member()
    # 0.1 as a binary float is 0.1000000000000000055…; 100 yuan must still be 10 points
    assert svc.orders.price("basic", 10000, T0).base == 10
    assert svc.orders.price("basic", 9999, T0).base == 9
    view = await svc.orders.create(order("R-1", by_code(m), 10000), "t")
    assert view.points == 10


async def test_same_order_again_is_a_duplicate_and_other_content_conflicts(svc: Services) -> None:
    m = await member()
    first = await svc.orders.create(order("B-1", by_code(m), 5000), "t")
    again = await svc.orders.create(order("B-1", by_code(m), 5000), "t")
    assert again.duplicate
    assert (again.points, again.balance) == (first.points, first.balance)
    with pytest.raises(OrderConflict):
        await svc.orders.create(order("B-1", by_code(m), 5001), "t")
    with pytest.raises(OrderConflict):
        await svc.orders.create(order("B-1", by_code(m), 5000, store="S2"), "t")
    assert await PointsEntry.filter(member_id=m.id).count() == 1
    assert await GrowthEntry.filter(member_id=m.id).count() == 1
    assert await AuditLog.filter(action="order.create").count() == 1
    assert (await reload(m)).points_balance == 50


async def test_unknown_members_are_refused_but_an_unknown_mobile_becomes_one(
    svc: Services,
) -> None:
    with pytest.raises(UnknownMember):
        await svc.orders.create(order("U-1", MemberLookup("openid", "oNobody"), 100), "t")
    with pytest.raises(UnknownMember):
        await svc.orders.create(order("U-2", MemberLookup("member_code", "NOPE"), 100), "t")
    with pytest.raises(UnknownMember):
        await svc.orders.create(order("U-3", MemberLookup("unionid", "uNobody"), 100), "t")
    assert await Order.all().count() == 0
    view = await svc.orders.create(
        order("U-4", MemberLookup("mobile", "+86 138-0013-8000"), 990), "t"
    )
    vault = MobileVault(MOBILE_KEY, HMAC_KEY)
    created = await Member.get(code=view.member_code)
    assert created.mobile_hash == vault.lookup_hash("13800138000")
    assert vault.decrypt(created.mobile_cipher or "") == "13800138000"
    identity = await Identity.get(member_id=created.id)
    assert (identity.kind, identity.value) == ("mobile_hash", created.mobile_hash)
    second = await svc.orders.create(order("U-5", MemberLookup("mobile", "13800138000"), 990), "t")
    assert second.member_code == view.member_code
    assert second.balance == 18
    assert await Member.all().count() == 1


async def test_mobile_members_created_at_once_are_one_member(svc: Services) -> None:
    lookups = [
        svc.orders.create(order(f"M-{n}", MemberLookup("mobile", "13900139000"), 100), "t")
        for n in range(8)
    ]
    views = await asyncio.gather(*lookups)
    assert len({v.member_code for v in views}) == 1
    assert await Member.all().count() == 1
    assert await Identity.filter(kind="mobile_hash").count() == 1


async def test_openid_under_a_named_account(svc: Services) -> None:
    m = await member(openid="oBuyer1")
    view = await svc.orders.create(order("O-1", MemberLookup("openid", "oBuyer1"), 300), "t")
    assert view.member_code == m.code
    with pytest.raises(UnknownMember):  # the same openid under another account is not theirs
        await svc.orders.create(order("O-2", MemberLookup("openid", "oBuyer1", "compat"), 300), "t")


async def test_zero_point_orders_are_still_recorded(svc: Services) -> None:
    m = await member()
    view = await svc.orders.create(order("Z-1", by_code(m), 99), "t")
    assert (view.points, view.growth, view.base) == (0, 0, 0)
    assert await Order.filter(external_id="Z-1").exists()
    assert await PointsEntry.all().count() == 0
    refunded = await svc.orders.refund("Z-1", "r1", 99, "t")
    assert (refunded.refunded_fen, refunded.points_reversed) == (99, 0)


async def test_partial_refunds_reverse_exactly_the_orders_points(svc: Services) -> None:
    gold = await member("gold")
    view = await svc.orders.create(order("P-1", by_code(gold), 1000, MEMBER_DAY), "t")
    assert (view.base, view.points, view.growth) == (10, 30, 10)  # 10 × 1.5 × 2
    taken = []
    for refund_id, amount in (("r1", 333), ("r2", 333), ("r3", 334)):
        answer = await svc.orders.refund("P-1", refund_id, amount, "t")
        assert answer.refund is not None
        taken.append((answer.refund.points_reversed, answer.refund.growth_reversed))
    # floor(30 × 333/1000) = 9, floor(30 × 666/1000) = 19, then 30
    assert taken == [(9, 3), (10, 3), (11, 4)]
    final = await svc.orders.view("P-1")
    assert (final.refunded_fen, final.points_reversed, final.growth_reversed) == (1000, 30, 10)
    after = await reload(gold)
    assert (after.points_balance, after.points_debt, after.growth) == (0, 0, 0)
    assert after.tier == "gold"  # a refund never lowers the tier
    assert [r.refund_id for r in final.refunds] == ["r1", "r2", "r3"]
    assert await points.reconcile() == []


async def test_refund_idempotency_and_limits(svc: Services) -> None:
    m = await member()
    await svc.orders.create(order("Q-1", by_code(m), 1000), "t")
    first = await svc.orders.refund("Q-1", "r1", 400, "t")
    again = await svc.orders.refund("Q-1", "r1", 400, "t")
    assert again.duplicate
    assert not first.duplicate
    assert again.refund == first.refund
    assert again.refunded_fen == 400
    with pytest.raises(RefundConflict):
        await svc.orders.refund("Q-1", "r1", 401, "t")
    with pytest.raises(RefundExceedsOrder):
        await svc.orders.refund("Q-1", "r2", 601, "t")
    assert await OrderRefund.all().count() == 1  # the refused refund left nothing behind
    assert (await svc.orders.view("Q-1")).refunded_fen == 400
    assert await AuditLog.filter(action="order.refund").count() == 1


async def test_refund_after_spend_becomes_debt_settled_by_the_next_earning(svc: Services) -> None:
    m = await member()
    await svc.orders.create(order("S-1", by_code(m), 10000), "t")  # 100 points
    await points.spend(m.id, 80, "spend:1", now=T0, reason="mall", source="test")
    answer = await svc.orders.refund("S-1", "r1", 10000, "t")
    assert (answer.balance, answer.debt) == (0, 80)
    later = await svc.orders.create(order("S-2", by_code(m), 5000, T0 + timedelta(days=1)), "t")
    assert (later.balance, later.debt) == (0, 30)
    settled = await svc.orders.create(order("S-3", by_code(m), 5000, T0 + timedelta(days=2)), "t")
    assert (settled.balance, settled.debt) == (20, 0)
    assert await points.reconcile() == []


async def test_full_refund_restores_a_used_coupon(svc: Services) -> None:
    m = await member()
    await svc.orders.create(order("C-1", by_code(m), 2000), "t")
    await Coupon.create(
        code="CPN0001",
        member_id=m.id,
        name="10 yuan off",
        value_fen=1000,
        valid_from=T0 - timedelta(days=1),
        valid_to=T0 + timedelta(days=30),
        state="used",
        used_at=T0,
        used_order_id="C-1",
        created_at=T0,
    )
    partial = await svc.orders.refund("C-1", "r1", 1000, "t")
    assert partial.restored_coupons == []
    assert (await Coupon.get(code="CPN0001")).state == "used"
    full = await svc.orders.refund("C-1", "r2", 1000, "t")
    assert full.restored_coupons == ["CPN0001"]
    coupon = await Coupon.get(code="CPN0001")
    assert (coupon.state, coupon.used_order_id) == ("issued", None)
    again = await svc.orders.refund("C-1", "r2", 1000, "t")
    assert again.duplicate
    assert again.restored_coupons == ["CPN0001"]


async def test_growth_raises_the_tier_and_its_reversal_does_not_lower_it(svc: Services) -> None:
    m = await member()
    view = await svc.orders.create(order("G-1", by_code(m), 300000), "t")  # 3000 growth
    assert view.growth == 3000
    assert (await reload(m)).tier == "silver"
    await svc.orders.create(order("G-1", by_code(m), 300000), "t")  # a repeat: no second notice
    assert await OutboxMessage.filter(member_id=m.id).count() == 1
    await svc.orders.refund("G-1", "r1", 300000, "t")
    after = await reload(m)
    assert (after.tier, after.growth) == ("silver", 0)
    # the next order is priced at the new tier
    assert (await svc.orders.create(order("G-2", by_code(m), 1000), "t")).points == 12


def test_fingerprint_is_canonical_in_time() -> None:
    utc_time = datetime(2026, 6, 10, 1, 0, tzinfo=ZoneInfo("UTC"))
    assert fingerprint("member_code:A", 1, "pos", "S", T0) == fingerprint(
        "member_code:A", 1, "pos", "S", utc_time
    )
    assert fingerprint("member_code:A", 1, "pos", "S", T0) != fingerprint(
        "member_code:A", 2, "pos", "S", T0
    )


@pytest.fixture
async def race_svc(
    wide_pool: str,  # noqa: F811
    wall: FakeWall,
    cache: Cache,
    keys: KeyBuilder,
) -> Services:
    wall.now = T0.timestamp()
    return services_on(order_settings(wide_pool), wall, cache, keys)


@pytest.mark.postgres
async def test_racing_refunds_never_over_reverse(race_svc: Services) -> None:
    gold = await member("gold")
    view = await race_svc.orders.create(order("X-1", by_code(gold), 1000, MEMBER_DAY), "t")
    assert view.points == 30
    refunds = [race_svc.orders.refund("X-1", f"r{n}", 70, "t") for n in range(20)]
    results = await asyncio.gather(*refunds, return_exceptions=True)
    done = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(done) == 14
    assert all(isinstance(r, RefundExceedsOrder) for r in refused)
    final = await race_svc.orders.view("X-1")
    assert final.refunded_fen == 980
    assert final.points_reversed == 30 * 980 // 1000
    assert sum(r.points_reversed for r in final.refunds) == final.points_reversed
    assert (await reload(gold)).points_balance == 30 - final.points_reversed
    assert await points.reconcile() == []
