"""Sign-in races: only the database's unique key may decide who signs in.

Two app instances, each with its own in-process cache (so per-process locks and dedupe
cannot serialise them), the rate limit raised, one member, 50 distinct 签到 messages.
The same tests run on SQLite and on PostgreSQL; the direct 50-task races need
PostgreSQL (SQLite serialises transactions and hides races). A deliberately naive
read-check-insert sign-in, held at a barrier so the interleaving is forced, fails the
same assertions, so they can fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient
from tortoise import connections
from tortoise.exceptions import IntegrityError
from wechatpy.messages import TextMessage

from bot.config import Settings
from bot.context import Ctx
from bot.filters import Command
from bot.replies import Reply, TextReply
from bot.routing import Router
from bot.services import points
from bot.services.signin import SignInService
from storage import db
from storage.cache import MemoryCache
from storage.models import Identity, Member, PointsEntry, PointsLot, SignIn
from tests.conftest import AppMaker, base_config, make_settings
from tests.fakes import FakeWall
from tests.helpers import oa_crypto, oa_text, post_oa, reply_fields

RACERS = 50
SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 6, 10, 9, 0, tzinfo=SH)
_codes = itertools.count(1)


@pytest.fixture
async def wide_pool(database: str) -> AsyncIterator[str]:
    """The database behind a pool wide enough for the race (asyncpg's default is 5).

    The PostgreSQL server is shared: the pool takes at most what the server has free
    (keeping a margin), so the race never starves anyone of connections.
    """
    if db.is_sqlite(database):
        yield database  # one connection whatever the pool: transactions take turns
        return
    free = await _free_connections()
    size = max(5, min(RACERS + 5, free - 10))
    await db.close_db()
    url = f"{database}{'&' if '?' in database else '?'}minsize=1&maxsize={size}"
    await db.open_db(url)
    yield url


async def _free_connections() -> int:
    rows = await connections.get("default").execute_query_dict(
        "SELECT current_setting('max_connections')::int - COUNT(*) AS free FROM pg_stat_activity"
    )
    return int(rows[0]["free"])


async def assert_one_award(member_id: int, balance: int = 5) -> None:
    """The race assertion: one SignIn, one earning, one lot, the invariants intact."""
    assert await SignIn.filter(member_id=member_id).count() == 1
    assert await PointsEntry.filter(member_id=member_id, kind="earn").count() == 1
    assert await PointsLot.filter(member_id=member_id).count() == 1
    assert (await Member.get(id=member_id)).points_balance == balance
    assert await points.reconcile() == []


# --- through two app instances ---------------------------------------------------------


async def two_instances(make_client: AppMaker, settings: Settings, **overrides: Any) -> list[Any]:
    """Two app instances ('processes'): their own caches, locks and dedupe; one database."""
    return [await make_client(settings, cache=MemoryCache(), **overrides) for _ in range(2)]


async def race_callbacks(
    clients: list[TestClient[Any, Any]], settings: Settings, wall: FakeWall
) -> list[str]:
    """RACERS distinct 签到 messages from one member, alternating instances; the replies."""
    posts = [
        post_oa(
            clients[i % 2],
            settings,
            oa_text("签到", openid="oRacer", at=int(wall.now)),
            timestamp=int(wall.now),
        )
        for i in range(RACERS)
    ]
    responses = await asyncio.gather(*posts)
    assert all(r.status == 200 for r in responses)
    crypto = oa_crypto(settings)
    return [str(reply_fields(crypto, await r.text())["Content"]) for r in responses]


async def _racer() -> int:
    return int((await Identity.get(value="oRacer")).member_id)  # type: ignore[attr-defined]


async def test_fifty_callbacks_through_two_instances_award_once(
    make_client: AppMaker, wall: FakeWall, wide_pool: str
) -> None:
    settings = make_settings(base_config(wide_pool), business={"rate_limit_per_minute": 1000})
    replies = await race_callbacks(await two_instances(make_client, settings), settings, wall)
    assert sum("签到成功" in r for r in replies) == 1
    assert sum("今天已经签到过了" in r for r in replies) == RACERS - 1
    assert await Member.all().count() == 1
    await assert_one_award(await _racer())


async def naive_sign_in(member_id: int, now: datetime, key: str, barrier: asyncio.Barrier) -> bool:
    """A deliberately wrong sign-in: read 'signed today?', wait, then award and insert.

    Its ledger key comes from the caller (the message), not the day, so only the check
    protects it; the barrier holds each reader until the other racers have read too.
    """
    day = now.astimezone(SH).date()
    signed = await SignIn.exists(member_id=member_id, day=day)
    await barrier.wait()
    if signed:
        return False
    expires = points.lot_expiry(now, SH)
    await points.earn(member_id, 5, key, now=now, expires_at=expires, reason="s", source="s")
    with contextlib.suppress(IntegrityError):  # "someone else inserted it": points went out
        await SignIn.create(member_id=member_id, day=day, streak=1, points=5, created_at=now)
    return True


def naive_router(barrier: asyncio.Barrier) -> Router:
    """The naive sign-in behind the 签到 command (its key from the message id)."""
    router = Router("naive-signin")

    @router.on(TextMessage, Command("signin"))
    async def naive(event: Any, ctx: Ctx) -> Reply:
        assert ctx.member is not None
        signed = await naive_sign_in(ctx.member.id, ctx.now, f"naive:{ctx.event_key}", barrier)
        return TextReply("签到成功" if signed else "今天已经签到过了")

    return router


async def test_the_race_assertion_catches_a_naive_sign_in(
    make_client: AppMaker, wall: FakeWall, wide_pool: str
) -> None:
    settings = make_settings(base_config(wide_pool), business={"rate_limit_per_minute": 1000})
    # per-instance member locks let one callback per instance in at a time: pairs meet
    clients = await two_instances(
        make_client, settings, routers=(naive_router(asyncio.Barrier(2)),)
    )
    replies = await race_callbacks(clients, settings, wall)
    assert sum("签到成功" in r for r in replies) == 2  # both first readers saw "not yet"
    with pytest.raises(AssertionError):
        await assert_one_award(await _racer())


# --- sign_in itself from 50 tasks (PostgreSQL) -----------------------------------------


async def new_member() -> int:
    """A fresh basic member."""
    return int((await Member.create(code=f"R{next(_codes):07d}", created_at=T0)).id)


async def race(sign_in: Callable[[int], Awaitable[bool]]) -> int:
    """RACERS sign-ins at once; how many said they signed in."""
    return sum(await asyncio.gather(*(sign_in(i) for i in range(RACERS))))


@pytest.mark.postgres
async def test_fifty_concurrent_sign_ins_award_once(wide_pool: str, settings: Settings) -> None:
    service, member_id = SignInService(settings), await new_member()

    async def once(i: int) -> bool:
        return (await service.sign_in(member_id, T0 + timedelta(seconds=i))).signed

    assert await race(once) == 1
    await assert_one_award(member_id)


@pytest.mark.postgres
async def test_fifty_concurrent_sign_ins_with_debt_award_once(
    wide_pool: str, settings: Settings
) -> None:
    service, member_id = SignInService(settings), await new_member()
    await points.reverse(member_id, 2, "refund:o1", now=T0, reason="refund", source="order")

    async def once(i: int) -> bool:
        return (await service.sign_in(member_id, T0 + timedelta(seconds=i))).signed

    assert await race(once) == 1
    await assert_one_award(member_id, balance=3)
    assert (await Member.get(id=member_id)).points_debt == 0


@pytest.mark.postgres
async def test_the_race_assertion_catches_a_naive_direct_sign_in(
    wide_pool: str, settings: Settings
) -> None:
    member_id, barrier = await new_member(), asyncio.Barrier(RACERS)

    async def naive(i: int) -> bool:
        return await naive_sign_in(member_id, T0, f"naive:{i}", barrier)

    assert await race(naive) == RACERS
    with pytest.raises(AssertionError):
        await assert_one_award(member_id)


@pytest.mark.postgres
async def test_sign_ins_racing_other_ledger_writers_keep_the_invariants(
    wide_pool: str, settings: Settings
) -> None:
    service, member_id = SignInService(settings), await new_member()
    end = datetime(2028, 1, 1, tzinfo=SH)

    async def one(i: int) -> None:
        now = T0 + timedelta(days=i // 4, minutes=i)
        match i % 4:
            case 0 | 1:
                await service.sign_in(member_id, now)
            case 2:
                await points.reverse(member_id, 7, f"rev:{i}", now=now, reason="r", source="o")
            case _:
                await points.earn(
                    member_id, 3, f"earn:{i}", now=now, expires_at=end, reason="e", source="o"
                )

    await asyncio.gather(*(one(i) for i in range(RACERS * 2)))
    assert await SignIn.filter(member_id=member_id).count() == RACERS * 2 // 4
    assert await points.reconcile() == []
