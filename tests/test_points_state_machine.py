"""The ledger against a simple model: Hypothesis runs earn, spend, reverse, adjust, expiry
and repeated keys, and both invariants are checked after every step.

A sync test that drives its own event loop: Hypothesis runs the steps, each one a
``run_until_complete``. The database is this test's (a migrated SQLite file, or the
PostgreSQL of ``SCRM_TEST_DB``), emptied before every example.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from tortoise import connections

from bot.services import points
from storage import db
from storage.models import Member, PointsEntry, PointsLot
from tests.conftest import TEST_DB

SH = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 6, 1, 9, 0, tzinfo=SH)
MEMBERS = 2
_LEDGER_TABLES = ("points_allocation", "points_lot", "points_entry", "member")
T = TypeVar("T")

members = st.integers(0, MEMBERS - 1)
amounts = st.integers(1, 300)


@dataclass
class Lot:
    """A lot as the model sees it."""

    amount: int
    remaining: int
    expires_at: datetime
    closed: bool = False


@dataclass
class Account:
    """A member as the model sees it."""

    id: int
    balance: int = 0
    debt: int = 0
    lots: list[Lot] = field(default_factory=list)

    def spendable(self, now: datetime) -> list[Lot]:
        """Open lots with points, not yet expired, in allocation order."""
        ready = [
            lot for lot in self.lots if not lot.closed and lot.remaining and lot.expires_at > now
        ]
        return sorted(ready, key=lambda lot: lot.expires_at)  # stable: creation order on ties

    def take(self, want: int, now: datetime) -> int:
        """Consume up to ``want`` oldest-expiring first; how much was taken."""
        taken = 0
        for lot in self.spendable(now):
            part = min(lot.remaining, want - taken)
            lot.remaining -= part
            taken += part
        return taken

    def credit(self, amount: int, expires_at: datetime) -> None:
        """An earning: debt first, a lot whenever the amount is positive."""
        settled = min(amount, self.debt)
        self.debt -= settled
        self.balance += amount - settled
        if amount:
            self.lots.append(Lot(amount, amount - settled, expires_at))

    def debit(self, amount: int, now: datetime) -> None:
        """A reversal: what the lots give, the rest as debt."""
        taken = self.take(min(amount, self.balance), now)
        self.balance -= taken
        self.debt += amount - taken


@dataclass(frozen=True)
class Call:
    """One effective ledger call, kept so it can be repeated."""

    op: str
    who: int
    value: int
    key: str
    now: datetime
    expires_at: datetime
    multipliers: tuple[int, int] = (1000, 1000)


async def _reset() -> list[int]:
    conn = connections.get("default")
    if conn.capabilities.dialect == "postgres":
        await conn.execute_script(f"TRUNCATE {', '.join(_LEDGER_TABLES)} RESTART IDENTITY CASCADE")
    else:
        for table in _LEDGER_TABLES:
            await conn.execute_script(f"DELETE FROM {table}")  # noqa: S608 - fixed names
    made = [await Member.create(code=f"SM{i}", created_at=START) for i in range(MEMBERS)]
    return [int(member.id) for member in made]


async def _perform(call: Call, member_id: int) -> points.LedgerResult:
    common: dict[str, Any] = {"now": call.now, "reason": "model"}
    match call.op:
        case "earn":
            tier, day = call.multipliers
            return await points.earn(
                member_id, call.value, call.key, expires_at=call.expires_at, source="model",
                tier_multiplier=tier, day_multiplier=day, **common,
            )  # fmt: skip
        case "spend":
            return await points.spend(member_id, call.value, call.key, source="model", **common)
        case "reverse":
            return await points.reverse(member_id, call.value, call.key, source="model", **common)
        case _:
            return await points.adjust(
                member_id, call.value, call.key, expires_at=call.expires_at, actor="model", **common
            )


@dataclass(frozen=True)
class Snapshot:
    """What the database holds, in the model's terms."""

    breaks: list[points.Break]
    totals: dict[int, tuple[int, int]]
    lots: dict[int, list[tuple[int, int, datetime, bool]]]
    entries: int


async def _snapshot() -> Snapshot:
    rows = await Member.all().values_list("id", "points_balance", "points_debt")
    lots: dict[int, list[tuple[int, int, datetime, bool]]] = {}
    for member_id, amount, remaining, expires_at, closed_at in (
        await PointsLot.all()
        .order_by("id")
        .values_list("member_id", "amount", "remaining", "expires_at", "closed_at")
    ):
        lots.setdefault(member_id, []).append(
            (amount, remaining, expires_at, closed_at is not None)
        )
    return Snapshot(
        breaks=await points.reconcile(),
        totals={int(i): (int(b), int(d)) for i, b, d in rows},
        lots=lots,
        # the key is unique, so one entry per effective call means one effect per key
        entries=await PointsEntry.all().count(),
    )


class LedgerMachine(RuleBasedStateMachine):
    """Ledger calls on two members, checked against ``Account`` after every step."""

    calls = Bundle("calls")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.now = START
        self.key_numbers = itertools.count()
        self.entries = 0
        self.accounts = [Account(member_id) for member_id in self.run(_reset())]

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one step's database work on the test's loop."""
        return self.loop.run_until_complete(coro)

    def new_call(self, op: str, who: int, value: int, days: int = 365, **extra: Any) -> Call:
        """A call with a fresh key at the model's current time."""
        key = f"{op}:{next(self.key_numbers)}"
        return Call(op, who, value, key, self.now, self.now + timedelta(days=days), **extra)

    def apply(self, call: Call) -> points.LedgerResult:
        """Make the call and check the result against the model, updated first."""
        result = self.run(_perform(call, self.accounts[call.who].id))
        account = self.accounts[call.who]
        assert not result.duplicate
        assert (result.balance, result.debt) == (account.balance, account.debt)
        self.entries += 1
        return result

    @rule(
        target=calls,
        who=members,
        base=amounts,
        tier=st.sampled_from([1000, 1250, 1500, 2000]),
        day=st.sampled_from([500, 1000, 2000]),
        days=st.sampled_from([1, 2, 7, 30, 90, 400]),
    )
    def earn(self, who: int, base: int, tier: int, day: int, days: int) -> Call:
        """Earn with multipliers into a lot expiring ``days`` from now."""
        call = self.new_call("earn", who, base, days, multipliers=(tier, day))
        amount = points.award(base, tier, day)
        self.accounts[who].credit(amount, call.expires_at)
        assert self.apply(call).amount == amount
        return call

    @rule(target=calls, who=members, amount=amounts)
    def spend(self, who: int, amount: int) -> Any:
        """Spend: refused (and nothing written) unless unexpired lots cover it."""
        account, call = self.accounts[who], self.new_call("spend", who, amount)
        if amount > sum(lot.remaining for lot in account.spendable(self.now)):
            with pytest.raises(points.InsufficientPoints):
                self.run(_perform(call, account.id))
            return multiple()
        account.balance -= account.take(amount, self.now)
        self.apply(call)
        return call

    @rule(target=calls, who=members, amount=amounts)
    def reverse(self, who: int, amount: int) -> Call:
        """Reverse: the balance first, the rest as debt."""
        call = self.new_call("reverse", who, amount)
        self.accounts[who].debit(amount, self.now)
        self.apply(call)
        return call

    @rule(target=calls, who=members, delta=st.integers(-200, 200).filter(bool))
    def adjust(self, who: int, delta: int) -> Call:
        """An operator's correction either way."""
        call = self.new_call("adjust", who, delta, days=30)
        if delta > 0:
            self.accounts[who].credit(delta, call.expires_at)
        else:
            self.accounts[who].debit(-delta, self.now)
        self.apply(call)
        return call

    @rule(days=st.sampled_from([0, 1, 7, 30, 90]), hours=st.sampled_from([0, 1, 23]))
    def advance(self, days: int, hours: int) -> None:
        """Let time pass without the expiry run (due lots stay open, unspendable)."""
        self.now += timedelta(days=days, hours=hours)

    @rule()
    def expire(self) -> None:
        """Run expiry: a keyed entry per due lot with points left, every due lot closed."""
        expected = 0
        for account in self.accounts:
            for lot in account.lots:
                if lot.closed or lot.expires_at > self.now:
                    continue
                expected += bool(lot.remaining)
                account.balance -= lot.remaining
                lot.remaining, lot.closed = 0, True
        assert self.run(points.expire_due(self.now)) == expected
        self.entries += expected

    @rule(call=calls)
    def repeat(self, call: Call) -> None:
        """The same call again, later: the first entry, no new effect."""
        later = replace(call, now=self.now)
        account = self.accounts[call.who]
        result = self.run(_perform(later, account.id))
        assert result.duplicate
        assert (result.balance, result.debt) == (account.balance, account.debt)

    @rule(call=calls, other=members)
    def reuse_key(self, call: Call, other: int) -> None:
        """The key of one call for a different one: refused, no effect."""
        value = call.value + 1 if call.value != -1 else -2  # never 0 (an InvalidAmount)
        clash = replace(call, value=value) if other == call.who else replace(call, who=other)
        with pytest.raises(points.KeyReused):
            self.run(_perform(clash, self.accounts[clash.who].id))

    @invariant()
    def ledger_matches_the_model(self) -> None:
        """Both invariants, the model's totals and lots, one entry per effective call."""
        snap = self.run(_snapshot())
        assert snap.breaks == []
        assert snap.entries == self.entries
        for account in self.accounts:
            assert snap.totals[account.id] == (account.balance, account.debt)
            model = [
                (lot.amount, lot.remaining, lot.expires_at, lot.closed) for lot in account.lots
            ]
            assert snap.lots.get(account.id, []) == model


def test_the_ledger_matches_its_model(db_url: str) -> None:
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(db.open_db(db_url))
        run_state_machine_as_test(
            lambda: LedgerMachine(loop),
            settings=settings(
                max_examples=50 if TEST_DB else 200,
                stateful_step_count=20,
                deadline=None,
                database=None,  # no .hypothesis/ in the work tree
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        loop.run_until_complete(db.close_db())
        loop.close()
