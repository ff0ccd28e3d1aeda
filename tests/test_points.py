"""The points ledger: amounts, lots, allocations, debt, expiry, reconciliation, races."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from tortoise.expressions import F

from bot.services import points
from bot.services.points import (
    InsufficientPoints,
    InvalidAmount,
    InvalidExpiry,
    KeyReused,
    LedgerResult,
    UnknownMember,
)
from storage import db
from storage.models import Member, PointsAllocation, PointsEntry, PointsLot

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 6, 15, 10, 0, tzinfo=SH)
END_2027 = datetime(2028, 1, 1, tzinfo=SH)  # "the end of 2027", business-local
_codes = itertools.count(1)


async def new_member() -> int:
    """A fresh member with no points."""
    member = await Member.create(code=f"M{next(_codes):07d}", created_at=T0)
    return int(member.id)


@pytest.fixture
async def member(database: str) -> int:
    """One member on this test's database."""
    return await new_member()


async def earn(member_id: int, base: int, key: str, **options: object) -> LedgerResult:
    """An earning with the test defaults (now T0, expiring at the end of 2027)."""
    values: dict[str, object] = {
        "now": T0,
        "expires_at": END_2027,
        "reason": "purchase",
        "source": "order",
    }
    values.update(options)
    return await points.earn(member_id, base, key, **values)  # type: ignore[arg-type]


async def spend(member_id: int, amount: int, key: str, now: datetime = T0) -> LedgerResult:
    """A mall redemption."""
    return await points.spend(member_id, amount, key, now=now, reason="mall", source="mall")


async def reverse(member_id: int, amount: int, key: str, now: datetime = T0) -> LedgerResult:
    """A refund's reversal."""
    return await points.reverse(member_id, amount, key, now=now, reason="refund", source="order")


async def lots(member_id: int) -> list[tuple[int, int, bool]]:
    """(amount, remaining, closed) of the member's lots, oldest first."""
    rows = await PointsLot.filter(member_id=member_id).order_by("id")
    return [(lot.amount, lot.remaining, lot.closed_at is not None) for lot in rows]


async def allocations(entry_id: int) -> list[tuple[int, int]]:
    """(lot id, amount) consumed by an entry."""
    rows = await PointsAllocation.filter(entry_id=entry_id).order_by("id")
    return [(row.lot_id, row.amount) for row in rows]  # type: ignore[attr-defined]


async def totals(member_id: int) -> tuple[int, int]:
    """(balance, debt) from the member row."""
    member = await Member.get(id=member_id)
    return member.points_balance, member.points_debt


async def assert_reconciled() -> None:
    """Both ledger invariants hold for every member."""
    assert await points.reconcile() == []


# --- earn, spend ----------------------------------------------------------------------


async def test_earn_rounds_down_and_records_its_multipliers(member: int) -> None:
    first = await earn(member, 333, "o1", tier_multiplier=1500, day_multiplier=2000)
    second = await earn(member, 7, "o2", tier_multiplier=1250)
    tiny = await earn(member, 1, "o3", day_multiplier=500)
    assert (first.amount, second.amount, tiny.amount) == (999, 8, 0)  # 8.75 → 8, 0.5 → 0
    assert (tiny.balance, tiny.debt, tiny.duplicate) == (1007, 0, False)
    entry = await PointsEntry.get(id=first.entry_id)
    assert (entry.kind, entry.amount, entry.base) == ("earn", 999, 333)
    assert (entry.tier_multiplier, entry.day_multiplier) == (1500, 2000)
    assert await lots(member) == [(999, 999, False), (8, 8, False)]  # a zero award has no lot
    assert await PointsEntry.filter(member_id=member).count() == 3
    await assert_reconciled()


async def test_spend_takes_the_oldest_expiring_lot_first(member: int) -> None:
    late = await earn(member, 100, "late", expires_at=END_2027 + timedelta(days=365))
    soon = await earn(member, 30, "soon", expires_at=END_2027 - timedelta(days=180))
    tie = await earn(member, 20, "tie", expires_at=END_2027 - timedelta(days=180))
    result = await spend(member, 60, "mall1")
    assert (result.amount, result.balance) == (-60, 90)
    lot_ids = {
        lot.entry_id: lot.id  # type: ignore[attr-defined]
        for lot in await PointsLot.filter(member_id=member)
    }
    # expiry order first, then creation order (id) between lots expiring together
    assert await allocations(result.entry_id) == [
        (lot_ids[soon.entry_id], 30),
        (lot_ids[tie.entry_id], 20),
        (lot_ids[late.entry_id], 10),
    ]
    assert await lots(member) == [(100, 90, False), (30, 0, False), (20, 0, False)]
    await assert_reconciled()


async def test_spend_never_goes_below_zero_and_writes_nothing_when_refused(member: int) -> None:
    await earn(member, 50, "o1")
    with pytest.raises(InsufficientPoints):
        await spend(member, 51, "mall1")
    assert await totals(member) == (50, 0)
    assert await PointsEntry.filter(member_id=member).count() == 1
    assert await PointsAllocation.all().count() == 0
    retried = await spend(member, 50, "mall1")  # nothing was written: the key is still free
    assert (retried.balance, retried.duplicate) == (0, False)
    await assert_reconciled()


async def test_points_past_expiry_are_not_spendable_before_the_expiry_run(member: int) -> None:
    await earn(member, 40, "old", expires_at=T0 + timedelta(days=1))
    await earn(member, 10, "new")
    later = T0 + timedelta(days=2)
    with pytest.raises(InsufficientPoints):
        await spend(member, 20, "mall1", now=later)
    assert await totals(member) == (50, 0)
    assert (await spend(member, 10, "mall2", now=later)).balance == 40
    await assert_reconciled()


async def test_a_spend_walks_past_a_full_page_of_lots(member: int) -> None:
    for i in range(120):  # more lots than one allocation page
        await earn(member, 1, f"sign:{i}", expires_at=END_2027 + timedelta(minutes=i))
    result = await spend(member, 110, "mall1")
    assert len(await allocations(result.entry_id)) == 110
    assert result.balance == 10
    await assert_reconciled()


# --- reverse, debt, adjust -----------------------------------------------------------


async def test_a_reversal_beyond_the_balance_becomes_debt_settled_by_the_next_earning(
    member: int,
) -> None:
    await earn(member, 100, "o1")
    await spend(member, 30, "mall1")
    refund = await reverse(member, 100, "refund:o1")
    assert (refund.amount, refund.balance, refund.debt) == (-100, 0, 30)
    assert await allocations(refund.entry_id) == [((await PointsLot.get(member_id=member)).id, 70)]
    await assert_reconciled()

    settling = await earn(member, 50, "o2")
    assert (settling.amount, settling.balance, settling.debt) == (50, 20, 0)
    new_lot = await PointsLot.get(entry_id=settling.entry_id)
    assert (new_lot.amount, new_lot.remaining, new_lot.closed_at) == (50, 20, None)
    assert await allocations(settling.entry_id) == [(new_lot.id, 30)]  # allocated at once
    await assert_reconciled()

    after = await earn(member, 5, "o3")
    assert (after.balance, after.debt) == (25, 0)
    assert await allocations(after.entry_id) == []


async def test_an_earning_smaller_than_the_debt_goes_wholly_to_it(member: int) -> None:
    await reverse(member, 80, "refund:o0")
    assert await totals(member) == (0, 80)
    result = await earn(member, 30, "o1")
    assert (result.balance, result.debt) == (0, 50)
    assert await lots(member) == [(30, 0, False)]
    await assert_reconciled()


async def test_adjust_both_ways(member: int) -> None:
    up = await points.adjust(
        member, 40, "adj1", now=T0, expires_at=END_2027, reason="goodwill", actor="ops:alice"
    )
    down = await points.adjust(
        member, -70, "adj2", now=T0, expires_at=END_2027, reason="typo", actor="ops:bob"
    )
    assert (up.balance, down.balance, down.debt) == (40, 0, 30)
    entry = await PointsEntry.get(id=up.entry_id)
    assert (entry.kind, entry.amount, entry.source, entry.ref, entry.tier_multiplier) == (
        "adjust",
        40,
        "operator",
        "ops:alice",
        1000,
    )
    assert (await PointsEntry.get(id=down.entry_id)).amount == -70
    with pytest.raises(InvalidAmount):
        await points.adjust(member, 0, "adj3", now=T0, expires_at=END_2027, reason="", actor="x")
    await assert_reconciled()


# --- expiry --------------------------------------------------------------------------


def test_default_expiry_is_the_end_of_the_following_business_year() -> None:
    assert points.lot_expiry(T0, SH) == END_2027
    assert points.lot_expiry(datetime(2026, 12, 31, 23, 59, tzinfo=SH), SH) == END_2027
    # 17:00 UTC on 31 December is already New Year's Day in Shanghai
    new_year = datetime(2026, 12, 31, 17, 0, tzinfo=ZoneInfo("UTC"))
    assert points.lot_expiry(new_year, SH) == datetime(2029, 1, 1, tzinfo=SH)


async def test_expiry_across_the_year_boundary(member: int) -> None:
    await earn(member, 100, "o1", expires_at=points.lot_expiry(T0, SH))  # earned 2026-06
    await earn(member, 20, "o2", now=T0 + timedelta(days=90))
    await spend(member, 50, "mall1")  # same expiry: the older lot goes first
    lot_ids = [lot.id for lot in await PointsLot.filter(member_id=member).order_by("id")]
    assert await lots(member) == [(100, 50, False), (20, 20, False)]

    assert await points.expire_due(datetime(2027, 12, 31, 23, 59, tzinfo=SH)) == 0
    assert await lots(member) == [(100, 50, False), (20, 20, False)]
    assert await points.expiring_between(T0, END_2027 + timedelta(seconds=1)) == 70

    assert await points.expire_due(datetime(2028, 1, 1, 0, 0, tzinfo=SH)) == 2
    assert await lots(member) == [(100, 0, True), (20, 0, True)]
    assert await totals(member) == (0, 0)
    expiries = await PointsEntry.filter(kind="expire").order_by("id")
    assert [(e.idempotency_key, e.amount) for e in expiries] == [
        (f"expire:lot:{lot_ids[0]}", -50),
        (f"expire:lot:{lot_ids[1]}", -20),
    ]
    assert await allocations(expiries[0].id) == [(lot_ids[0], 50)]
    assert await points.expire_due(datetime(2028, 6, 1, tzinfo=SH)) == 0
    await assert_reconciled()


async def test_a_lot_spent_before_expiry_is_just_closed(member: int) -> None:
    await earn(member, 10, "o1", expires_at=T0 + timedelta(days=30))
    await spend(member, 10, "mall1")
    assert await points.expire_due(T0 + timedelta(days=30)) == 0
    assert await lots(member) == [(10, 0, True)]
    assert await PointsEntry.filter(kind="expire").count() == 0
    await assert_reconciled()


async def test_two_expiry_runs_at_once_expire_each_lot_once(database: str) -> None:
    members = [await new_member() for _ in range(5)]
    for member_id in members:
        for i in range(3):
            await earn(member_id, 10 + i, f"{member_id}:{i}", expires_at=T0 + timedelta(days=i + 1))
    later = T0 + timedelta(days=10)
    runs = await asyncio.gather(*(points.expire_due(later) for _ in range(4)))
    assert sum(runs) == 15
    assert await PointsEntry.filter(kind="expire").count() == 15
    assert await points.outstanding() == 0
    await assert_reconciled()


# --- reports and reconciliation ---------------------------------------------------------


async def test_outstanding_and_expiring_between(database: str) -> None:
    one, two = await new_member(), await new_member()
    await earn(one, 100, "a", expires_at=END_2027)
    await earn(two, 50, "b", expires_at=END_2027 - timedelta(days=31))
    await spend(two, 20, "c")
    assert await points.outstanding() == 130
    december = END_2027 - timedelta(days=31)
    assert await points.expiring_between(december, END_2027) == 30
    assert await points.expiring_between(december, END_2027 + timedelta(days=1)) == 130
    assert await points.expiring_between(december, END_2027 + timedelta(days=1), one) == 100


async def test_reconcile_finds_a_planted_break_and_nothing_else(database: str) -> None:
    honest, tampered, lot_broken = await new_member(), await new_member(), await new_member()
    for member_id in (honest, tampered, lot_broken):
        await earn(member_id, 100, f"{member_id}:o1")
        await spend(member_id, 30, f"{member_id}:s1")
        await reverse(member_id, 90, f"{member_id}:r1")
    await assert_reconciled()

    await Member.filter(id=tampered).update(points_balance=F("points_balance") + 5)
    await PointsLot.filter(member_id=lot_broken).update(remaining=F("remaining") + 1)
    breaks = await points.reconcile()
    assert [b.member_id for b in breaks] == [tampered, lot_broken]
    assert (breaks[0].balance, breaks[0].debt, breaks[0].open_lots, breaks[0].entries) == (
        5,
        20,
        0,
        -20,
    )
    assert (breaks[1].open_lots, breaks[1].bad_lots) == (1, 1)


# --- idempotency and errors ------------------------------------------------------------


async def test_the_same_key_twice_has_one_effect(member: int) -> None:
    first = await earn(member, 100, "order:1")
    again = await earn(member, 100, "order:1")
    assert (again.entry_id, again.amount, again.balance, again.duplicate) == (
        first.entry_id,
        100,
        100,
        True,
    )
    spent = await spend(member, 40, "mall:1")
    assert (await spend(member, 40, "mall:1")).entry_id == spent.entry_id
    assert (await reverse(member, 10, "refund:1")).debt == 0
    assert (await reverse(member, 10, "refund:1")).duplicate
    assert await totals(member) == (50, 0)
    assert await PointsEntry.filter(member_id=member).count() == 3
    assert await PointsLot.filter(member_id=member).count() == 1
    await assert_reconciled()


async def test_a_key_reused_for_another_operation_is_refused(member: int) -> None:
    other = await new_member()
    await earn(member, 100, "order:1")
    with pytest.raises(KeyReused):
        await earn(member, 120, "order:1")
    with pytest.raises(KeyReused):
        await spend(member, 100, "order:1")
    with pytest.raises(KeyReused):
        await earn(other, 100, "order:1")
    assert await totals(member) == (100, 0)
    assert await totals(other) == (0, 0)


async def test_typed_errors(member: int) -> None:
    with pytest.raises(UnknownMember):
        await earn(999_999, 10, "x1")
    with pytest.raises(UnknownMember):
        await spend(999_999, 10, "x2")
    with pytest.raises(UnknownMember):
        await reverse(999_999, 10, "x3")
    for bad in (0, -5):
        with pytest.raises(InvalidAmount):
            await spend(member, bad, "x4")
        with pytest.raises(InvalidAmount):
            await reverse(member, bad, "x5")
        with pytest.raises(InvalidAmount):
            await earn(member, bad, "x6")
        with pytest.raises(InvalidAmount):
            await earn(member, 10, "x7", tier_multiplier=bad)
    with pytest.raises(InvalidExpiry):
        await earn(member, 10, "x8", expires_at=T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        await spend(member, 1, "x9", now=datetime(2026, 6, 15))
    assert await PointsEntry.all().count() == 0


# --- concurrency (PostgreSQL: SQLite serialises transactions and hides races) -----------

RACERS = 50


@pytest.fixture
async def wide_pool(database: str) -> str:
    """The same database behind a pool as wide as the races (asyncpg's default is 5)."""
    if db.is_sqlite(database):
        return database  # one connection whatever the pool: transactions take turns
    await db.close_db()
    url = f"{database}{'&' if '?' in database else '?'}minsize=1&maxsize={RACERS + 10}"
    await db.open_db(url)
    return url


async def race_spends(member_id: int, spend_once: Callable[[int], Awaitable[bool]]) -> int:
    """Fund 100 points, run RACERS spends of 10 at once, and count the successes."""
    await earn(member_id, 100, "fund")
    results = await asyncio.gather(*(spend_once(i) for i in range(RACERS)))
    return sum(results)


async def assert_no_overspend(member_id: int, successes: int) -> None:
    """The race assertion: exactly 10 spends of 10 fit in 100 points."""
    balance, _ = await totals(member_id)
    assert (successes, balance) == (10, 0)


@pytest.fixture
def naive_spend() -> Callable[[int, int, asyncio.Barrier], Awaitable[bool]]:
    """A deliberately wrong spend (read, check, save) that the race test must catch."""

    async def spend_naively(member_id: int, amount: int, barrier: asyncio.Barrier) -> bool:
        member = await Member.get(id=member_id)
        await barrier.wait()  # opens once every racer has read the balance
        if member.points_balance < amount:
            return False
        member.points_balance -= amount
        await member.save(update_fields=["points_balance"])
        return True

    return spend_naively


@pytest.mark.postgres
async def test_concurrent_spends_never_overspend(wide_pool: str) -> None:
    member_id = await new_member()

    async def spend_once(i: int) -> bool:
        try:
            await spend(member_id, 10, f"race:{i}")
        except InsufficientPoints:
            return False
        return True

    await assert_no_overspend(member_id, await race_spends(member_id, spend_once))
    assert await PointsEntry.filter(kind="spend").count() == 10
    await assert_reconciled()


@pytest.mark.postgres
async def test_the_race_assertion_catches_a_naive_spend(
    wide_pool: str, naive_spend: Callable[[int, int, asyncio.Barrier], Awaitable[bool]]
) -> None:
    member_id = await new_member()
    barrier = asyncio.Barrier(RACERS)
    successes = await race_spends(member_id, lambda _: naive_spend(member_id, 10, barrier))
    assert successes == RACERS  # every racer read 100 and went ahead
    with pytest.raises(AssertionError):
        await assert_no_overspend(member_id, successes)


@pytest.mark.postgres
async def test_concurrent_duplicates_write_one_entry(wide_pool: str) -> None:
    member_id = await new_member()
    earned = await asyncio.gather(*(earn(member_id, 100, "order:dup") for _ in range(20)))
    assert sorted(r.duplicate for r in earned) == [False] + [True] * 19
    assert {r.entry_id for r in earned} == {earned[0].entry_id}
    spent = await asyncio.gather(*(spend(member_id, 30, "mall:dup") for _ in range(20)))
    assert [r.duplicate for r in spent].count(False) == 1
    assert await PointsEntry.filter(member_id=member_id).count() == 2
    assert await PointsLot.filter(member_id=member_id).count() == 1
    assert await totals(member_id) == (70, 0)
    await assert_reconciled()


async def test_a_storm_of_mixed_operations_keeps_the_invariants(wide_pool: str) -> None:
    members = [await new_member() for _ in range(3)]
    rng = random.Random(7)
    keys = itertools.count()

    async def one(step: int) -> None:
        member_id, key = rng.choice(members), f"storm:{next(keys) % 150}"
        now = T0 + timedelta(days=step // 20)
        try:
            match rng.randrange(4):
                case 0:
                    expires = now + timedelta(days=rng.randint(1, 5))
                    await earn(member_id, rng.randint(1, 60), key, now=now, expires_at=expires)
                case 1:
                    await spend(member_id, rng.randint(1, 40), key, now=now)
                case 2:
                    await reverse(member_id, rng.randint(1, 40), key, now=now)
                case _:
                    await points.expire_due(now)
        except (InsufficientPoints, KeyReused):
            pass

    for i in range(0, 200, 40):
        await asyncio.gather(*(one(step) for step in range(i, i + 40)))
    await assert_reconciled()
