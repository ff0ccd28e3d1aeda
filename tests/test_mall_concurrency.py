"""Redemption races: stock, the per-member limit and the ledger stay exact.

Two app instances (own in-process caches, so no per-process lock or dedupe can serialise
them), the rate limit raised: 200 members with enough points race for a reward with
stock 10; one member sends 20 兑换 for a reward limited to 2 per member. The same races
run straight against the service from many tasks on PostgreSQL with a wide pool
(SQLite serialises transactions and hides races).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient

from bot.clock import BusinessClock
from bot.config import Settings
from bot.services import points
from bot.services.mall import MallService
from storage.models import Coupon, Identity, Member, PointsEntry, Redemption, Reward
from tests.conftest import AppMaker, base_config, make_settings
from tests.fakes import FakeWall
from tests.helpers import oa_crypto, oa_text, post_oa, reply_fields
from tests.test_signin_concurrency import two_instances, wide_pool  # noqa: F401

SH = ZoneInfo("Asia/Shanghai")
FAR = datetime(2030, 1, 1, tzinfo=SH)
SEEDED = datetime(2023, 11, 1, tzinfo=SH)  # before the pinned wall clock (2023-11-15)
MEMBERS, STOCK, COST, HELD = 200, 10, 100, 250
_codes = itertools.count(1)


def _reward(**values: Any) -> dict[str, Any]:
    return {
        "code": "R10",
        "name": "10元券",
        "cost_points": COST,
        "stock": STOCK,
        "per_member_limit": 0,
        "coupon_value_fen": 1000,
        **values,
    }


def _settings(url: str, reward: dict[str, Any]) -> Settings:
    raw = base_config(url)
    raw["rewards"] = [reward]
    raw["business"] = {"rate_limit_per_minute": 1000}
    return make_settings(raw)


async def _post(
    client: TestClient[Any, Any], settings: Settings, text: str, openid: str, at: int
) -> str:
    response = await post_oa(client, settings, oa_text(text, openid=openid, at=at), timestamp=at)
    assert response.status == 200
    return str(reply_fields(oa_crypto(settings), await response.text())["Content"])


async def _seed_chat_members(
    client: TestClient[Any, Any], settings: Settings, openids: list[str], at: int, held: int = HELD
) -> list[int]:
    """Each openid says 积分 once (so it becomes a member), then holds ``held`` points."""
    await asyncio.gather(*(_post(client, settings, "积分", o, at) for o in openids))
    ids = []
    for openid in openids:
        member_id = int((await Identity.get(value=openid)).member_id)  # type: ignore[attr-defined]
        await _hold(member_id, held)
        ids.append(member_id)
    return ids


async def _hold(member_id: int, amount: int = HELD) -> None:
    await points.earn(
        member_id, amount, f"seed:{member_id}", now=SEEDED, expires_at=FAR, reason="t", source="t"
    )


async def assert_books(members: list[int], winners: int, held: int = HELD) -> None:
    """Stock, coupons, redemptions and every balance agree with ``winners`` redemptions."""
    assert await Redemption.all().count() == winners
    assert await Coupon.all().count() == winners
    assert await PointsEntry.filter(kind="spend").count() == winners
    balances = await Member.filter(id__in=members).values_list("points_balance", flat=True)
    assert min(balances) >= 0
    assert sum(balances) == held * len(members) - winners * COST  # type: ignore[arg-type]
    assert await points.reconcile() == []


# --- through two app instances ---------------------------------------------------------


async def test_two_hundred_members_race_for_ten_through_two_instances(
    make_client: AppMaker,
    wall: FakeWall,
    wide_pool: str,  # noqa: F811
) -> None:
    settings = _settings(wide_pool, _reward())
    clients = await two_instances(make_client, settings)
    at = int(wall.now)
    openids = [f"oMall{n:04d}" for n in range(MEMBERS)]
    members = await _seed_chat_members(clients[0], settings, openids, at)
    replies = await asyncio.gather(
        *(_post(clients[n % 2], settings, "兑换 r10", o, at) for n, o in enumerate(openids))
    )
    assert sum(r.startswith("兑换成功") for r in replies) == STOCK
    assert sum("已经兑完了" in r for r in replies) == MEMBERS - STOCK
    assert (await Reward.get(code="R10")).stock == 0
    await assert_books(members, STOCK)


async def test_one_member_racing_a_limit_of_two_through_two_instances(
    make_client: AppMaker,
    wall: FakeWall,
    wide_pool: str,  # noqa: F811
) -> None:
    settings = _settings(wide_pool, _reward(stock=None, per_member_limit=2))
    clients = await two_instances(make_client, settings)
    at = int(wall.now)
    # points for all 20: only the limit may stop them
    members = await _seed_chat_members(clients[0], settings, ["oGreedy"], at, held=5000)
    replies = await asyncio.gather(
        *(_post(clients[n % 2], settings, "兑换 R10", "oGreedy", at) for n in range(20))
    )
    assert sum(r.startswith("兑换成功") for r in replies) == 2
    assert sum("每人限兑 2 次" in r for r in replies) == 18
    assert (await Reward.get(code="R10")).stock is None
    await assert_books(members, 2, held=5000)


# --- the service itself from many tasks (PostgreSQL) ------------------------------------


async def _new_member(held: int = HELD) -> int:
    member_id = int((await Member.create(code=f"X{next(_codes):07d}", created_at=SEEDED)).id)
    await _hold(member_id, held)
    return member_id


async def _race(n: int, redeem: Callable[[int], Awaitable[bool]]) -> int:
    return sum(await asyncio.gather(*(redeem(i) for i in range(n))))


async def _mall(url: str, reward: dict[str, Any]) -> MallService:
    settings = _settings(url, reward)
    mall = MallService(settings, BusinessClock(settings.tz))
    await mall.sync_config(SEEDED)
    return mall


@pytest.mark.postgres
async def test_two_hundred_tasks_race_for_ten(wide_pool: str) -> None:  # noqa: F811
    mall = await _mall(wide_pool, _reward())
    members = [await _new_member() for _ in range(MEMBERS)]
    now = datetime(2023, 11, 15, 12, tzinfo=SH)

    async def once(i: int) -> bool:
        result = await mall.redeem(members[i], "R10", f"race:{i}", now)
        return result.issued is not None

    assert await _race(MEMBERS, once) == STOCK
    assert (await Reward.get(code="R10")).stock == 0
    await assert_books(members, STOCK)


@pytest.mark.postgres
async def test_racing_tasks_of_one_member_respect_the_limit(wide_pool: str) -> None:  # noqa: F811
    mall = await _mall(wide_pool, _reward(stock=None, per_member_limit=2))
    member = await _new_member(held=5000)  # points for all 20: only the limit may stop them
    now = datetime(2023, 11, 15, 12, tzinfo=SH)

    async def once(i: int) -> bool:
        return (await mall.redeem(member, "R10", f"limit:{i}", now)).issued is not None

    assert await _race(20, once) == 2
    await assert_books([member], 2, held=5000)


@pytest.mark.postgres
async def test_racing_members_short_of_points_never_take_stock(wide_pool: str) -> None:  # noqa: F811
    # half the racers can afford the reward: their refusals must give the stock back
    mall = await _mall(wide_pool, _reward(stock=20))
    members = [await _new_member(HELD if i % 2 else COST - 1) for i in range(60)]
    now = datetime(2023, 11, 15, 12, tzinfo=SH)

    async def once(i: int) -> bool:
        return (await mall.redeem(members[i], "R10", f"short:{i}", now)).issued is not None

    assert await _race(60, once) == 20
    assert (await Reward.get(code="R10")).stock == 0
    rich = members[1::2]
    assert await Redemption.filter(member_id__in=members[0::2]).count() == 0
    assert await Redemption.filter(member_id__in=rich).count() == 20
    assert await points.reconcile() == []


async def test_the_limit_assertions_catch_a_check_before_the_lock(wide_pool: str) -> None:  # noqa: F811
    # A deliberately wrong limit: count outside the transaction, wait until every racer
    # has counted, then redeem (the reward itself unlimited). The assertions above fail.
    mall = await _mall(wide_pool, _reward(stock=None))
    member, barrier = await _new_member(held=5000), asyncio.Barrier(20)
    now = datetime(2023, 11, 15, 12, tzinfo=SH)

    async def naive(i: int) -> bool:
        taken = await Redemption.filter(member_id=member).count()
        await barrier.wait()
        if taken >= 2:
            return False
        return (await mall.redeem(member, "R10", f"naive:{i}", now)).issued is not None

    assert await _race(20, naive) == 20  # every racer counted none
    with pytest.raises(AssertionError):
        await assert_books([member], 2, held=5000)
