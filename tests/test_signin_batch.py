"""Sign-ins written together (group commit: on SQLite one transaction per batch, on
PostgreSQL one statement per batch): one award per member-day, whatever shares a batch."""

from __future__ import annotations

import asyncio
import itertools
import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from bot.config import Settings
from bot.services import points
from bot.services.signin import SignInResult, SignInService
from storage import db
from storage.models import Member, PointsEntry, PointsLot, SignIn
from storage.repos import signin_pg, signin_sql, signin_sqlite
from storage.repos.group_commit import GroupCommit
from storage.repos.points import UnknownMember

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 6, 10, 9, 0, tzinfo=SH)  # a Wednesday, not a member day
_codes = itertools.count(1)


async def new_members(n: int, tier: str = "basic") -> list[int]:
    """n fresh members."""
    rows = [
        await Member.create(code=f"B{next(_codes):07d}", tier=tier, created_at=T0) for _ in range(n)
    ]
    return [int(row.id) for row in rows]


@pytest.fixture
def service(settings: Settings) -> SignInService:
    """The sign-in service on the standard test settings."""
    return SignInService(settings)


async def together(service: SignInService, calls: list[tuple[int, datetime]]) -> list[SignInResult]:
    """Start every sign-in at once (they queue behind one another's transactions)."""
    return list(await asyncio.gather(*(service.sign_in(m, at) for m, at in calls)))


async def assert_one_award_per_member_day(member_ids: list[int], days: int = 1) -> None:
    """Exactly one SignIn, one earning and one lot per member-day; the ledger reconciles."""
    for member_id in member_ids:
        assert await SignIn.filter(member_id=member_id).count() == days
        assert await PointsEntry.filter(member_id=member_id, source="signin").count() == days
        assert await PointsLot.filter(member_id=member_id, entry__source="signin").count() == days
    assert await points.reconcile() == []


def sign_in_inserts(caplog: pytest.LogCaptureFixture) -> int:
    """How many sign-in INSERTs were logged (tortoise's on PostgreSQL, the batch's on SQLite)."""
    return sum(1 for r in caplog.records if "INSERT INTO sign_in" in r.getMessage())


async def test_many_members_in_few_batches(
    service: SignInService, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    members = await new_members(450)  # more than two batches' cap
    with (
        caplog.at_level(logging.DEBUG, logger="tortoise.db_client"),
        caplog.at_level(logging.DEBUG, logger=signin_sqlite.__name__),  # the batches
    ):
        caplog.clear()
        results = await together(service, [(m, T0) for m in members])
        inserts = sign_in_inserts(caplog)
    assert all(r.signed and (r.points, r.streak, r.balance) == (5, 1, 5) for r in results)
    await assert_one_award_per_member_day(members)
    assert 3 <= inserts <= 5  # batches of at most 200, not one statement per sign-in


async def test_the_same_member_twice_in_one_batch_is_awarded_once(
    service: SignInService, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    member, other = await new_members(2)
    later = T0 + timedelta(minutes=1)
    with (
        caplog.at_level(logging.DEBUG, logger="tortoise.db_client"),
        caplog.at_level(logging.DEBUG, logger=signin_sqlite.__name__),
    ):
        calls = [(member, T0), (other, T0), (member, later), (member, T0)]
        results = await together(service, calls)
    assert sign_in_inserts(caplog) == 1  # the four calls shared one batch
    mine = [results[0], results[2], results[3]]
    # one batch on either database, taken in order: the first of the member's three counts
    assert [(r.signed, r.points, r.streak, r.balance) for r in mine] == [
        (True, 5, 1, 5),
        (False, 0, 1, 5),
        (False, 0, 1, 5),
    ]
    assert (results[1].signed, results[1].balance) == (True, 5)
    await assert_one_award_per_member_day([member, other])


async def test_a_streak_and_a_first_day_share_a_batch(
    service: SignInService, database: str
) -> None:
    regular, newcomer, gold = await new_members(3)
    await Member.filter(id=gold).update(tier="gold")
    for day in range(6):
        await service.sign_in(regular, T0 + timedelta(days=day))
    seventh = T0 + timedelta(days=6)
    results = await together(service, [(regular, seventh), (newcomer, seventh), (gold, seventh)])
    assert [(r.streak, r.points) for r in results] == [(7, 25), (1, 5), (1, 7)]  # gold ×1.5
    assert results[0].balance == 6 * 5 + 25
    entry = await PointsEntry.get(idempotency_key=f"signin:{gold}:2026-06-16")
    assert (entry.base, entry.tier_multiplier, entry.amount) == (5, 1500, 7)
    assert await points.reconcile() == []


async def test_a_member_with_debt_takes_the_ledgers_path_beside_a_batch(
    service: SignInService, database: str
) -> None:
    indebted, *others = await new_members(5)
    await points.reverse(indebted, 3, "refund:o1", now=T0, reason="refund", source="order")
    calls = [(indebted, T0), *((m, T0) for m in others), (indebted, T0)]
    results = await together(service, calls)
    mine = sorted((r.signed, r.points, r.balance) for r in (results[0], results[-1]))
    assert mine == [(False, 0, 2), (True, 5, 2)]  # on PostgreSQL either of the two may win
    if db.is_sqlite(database):
        assert results[0].signed
    assert all(r.signed and r.balance == 5 for r in results[1:-1])
    assert (await Member.get(id=indebted)).points_debt == 0
    await assert_one_award_per_member_day([indebted, *others])


async def test_concurrent_batches_over_two_days_with_other_ledger_writers(
    service: SignInService, database: str
) -> None:
    members = await new_members(120)
    days = [T0, T0 + timedelta(days=1)]
    calls = [(m, at + timedelta(minutes=i % 3)) for at in days for m in members for i in range(2)]

    async def earn(member_id: int) -> None:
        await points.earn(
            member_id, 2, f"bonus:{member_id}", now=T0, expires_at=T0 + timedelta(days=30),
            reason="bonus", source="test",
        )  # fmt: skip

    signed, _ = await asyncio.gather(
        together(service, calls), asyncio.gather(*(earn(m) for m in members[::7]))
    )
    assert sum(r.signed for r in signed) == len(members) * len(days)
    await assert_one_award_per_member_day(members, days=2)
    assert (await Member.get(id=members[0])).points_balance == 5 + 5 + 2


async def test_an_unknown_member_fails_only_its_own_call(
    service: SignInService, database: str
) -> None:
    (member,) = await new_members(1)
    results = await asyncio.gather(
        service.sign_in(member, T0), service.sign_in(10**9, T0), return_exceptions=True
    )
    assert isinstance(results[0], SignInResult)
    assert results[0].signed
    assert isinstance(results[1], UnknownMember)
    await assert_one_award_per_member_day([member])


async def test_a_failing_batch_is_written_one_by_one(
    service: SignInService, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    broken, *fine = await new_members(4)
    # an entry under the sign-in's key without its SignIn row: the entry INSERT must fail
    await PointsEntry.create(
        member_id=broken, idempotency_key=f"signin:{broken}:2026-06-10", kind="earn",
        amount=0, created_at=T0,
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger=signin_sql.__name__):
        results = await asyncio.gather(
            *(service.sign_in(m, T0) for m in [*fine[:2], broken, fine[2]]),
            return_exceptions=True,
        )
    # the four shared one batch, it failed as a whole, and each was then written alone
    assert [r.getMessage()[:28] for r in caplog.records] == ["sign-in batch of 4 failed (I"]
    assert isinstance(results[2], IntegrityError)
    assert all(isinstance(r, SignInResult) and r.signed for r in [*results[:2], results[3]])
    assert await SignIn.filter(member_id=broken).count() == 0
    await assert_one_award_per_member_day(fine)


@pytest.mark.postgres  # PostgreSQL's batch statement: SQLite's batches take turns in one process
async def test_two_processes_batches_of_the_same_members_award_each_once(
    service: SignInService, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Two app processes' writers (two group commits), the same members in opposite orders:
    locks are taken in member order, so neither batch deadlocks or falls back; each member
    is signed in by exactly one of the two, and the other gets "already signed"."""
    members = await new_members(30)
    day = service.day_of(T0)

    def attempt(member_id: int) -> signin_sql.Attempt:
        expires = points.lot_expiry(T0, SH)
        return signin_sql.Attempt(member_id, day, T0, service.key(member_id, day), 1000, expires)

    key = (day, 1000, service.rules)
    first, second = (GroupCommit(signin_pg.write) for _ in range(2))
    with caplog.at_level(logging.WARNING, logger=signin_sql.__name__):
        outcomes = await asyncio.gather(
            asyncio.gather(*(first.submit(key, attempt(m)) for m in members)),
            asyncio.gather(*(second.submit(key, attempt(m)) for m in reversed(members))),
        )
    assert caplog.records == []  # no batch failed (a deadlock would have failed one)
    by_member = zip(outcomes[0], reversed(outcomes[1]), strict=True)
    for one, other in by_member:
        assert sorted([one.signed, other.signed]) == [False, True]
        assert (one.streak, one.balance) == (other.streak, other.balance) == (1, 5)
    await assert_one_award_per_member_day(members)


async def test_inside_a_callers_transaction_a_sign_in_is_written_in_it(
    service: SignInService, database: str
) -> None:
    (member,) = await new_members(1)
    inside: list[SignInResult] = []

    async def rolled_back() -> None:
        async with in_transaction():
            inside.append(await service.sign_in(member, T0))
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        await rolled_back()
    assert inside[0].signed
    assert await SignIn.filter(member_id=member).count() == 0
    assert (await service.sign_in(member, T0)).signed
    await assert_one_award_per_member_day([member])


# --- the group commit itself --------------------------------------------------------------


async def test_group_commit_batches_by_key_in_order_up_to_the_cap() -> None:
    batches: list[tuple[str, list[int]]] = []

    async def write(key: str, items: list[int]) -> list[int | Exception]:
        batches.append((key, items))
        await asyncio.sleep(0)
        return [ValueError(i) if i == 4 else i * 10 for i in items]

    group: GroupCommit[str, int, int] = GroupCommit(write, cap=2)
    assert await group.submit("a", 0) == 0  # alone: written at once, no waiting for company
    keys = ["a", "b", "a", "a", "a"]
    results = await asyncio.gather(
        *(group.submit(k, i) for i, k in enumerate(keys)), return_exceptions=True
    )
    assert batches[1:] == [("a", [0, 2]), ("b", [1]), ("a", [3, 4])]
    assert results[:4] == [0, 10, 20, 30]
    assert isinstance(results[4], ValueError)


async def test_group_commit_fails_a_whole_batch_when_the_write_raises() -> None:
    failures = [OSError("disk full")]

    async def write(key: str, items: list[int]) -> list[int | Exception]:
        if failures:
            raise failures.pop()
        return items

    group: GroupCommit[str, int, int] = GroupCommit(write)
    results = await asyncio.gather(
        group.submit("a", 1), group.submit("a", 2), return_exceptions=True
    )
    assert [type(r) for r in results] == [OSError, OSError]
    assert await group.submit("a", 3) == 3  # the writer carries on with the next batch
