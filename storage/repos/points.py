"""The points ledger: entries, lots and allocations, with the member's cached totals.

Every write is one transaction that inserts its keyed entry first (the unique key
decides duplicates), then takes the member row with an UPDATE (a row lock on
PostgreSQL, the write lock on SQLite) before it reads or touches lots. Every writer
takes that lock before any lot, so lot reads under it are stable and writers never
deadlock; lot decrements are conditional updates all the same.

Times are bound in UTC: SQLite compares stored datetimes as text, and the ORM does not
convert filter values (an Asia/Shanghai bound would compare eight hours off).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import F
from tortoise.functions import Sum
from tortoise.transactions import in_transaction

from storage.models import Member, PointsAllocation, PointsEntry, PointsLot

_PAGE = 50  # lots read per round while allocating (a daily signer holds hundreds)


class PointsError(Exception):
    """Base of the ledger's typed errors."""


class InsufficientPoints(PointsError):
    """A spend larger than the member's spendable points (nothing was written)."""


class UnknownMember(PointsError):
    """No member with this id."""


class LedgerConflict(RuntimeError):
    """A lot changed under the member lock: a writer skipped the lock (a bug)."""


@dataclass(frozen=True, slots=True)
class EntrySpec:
    """One keyed ledger entry to write (``amount`` signed)."""

    member_id: int
    key: str
    kind: str
    amount: int
    now: datetime
    reason: str = ""
    source: str = ""
    ref: str = ""
    base: int = 0
    tier_multiplier: int = 1000
    day_multiplier: int = 1000


@dataclass(frozen=True, slots=True)
class Effect:
    """A written entry and the member's totals after it."""

    entry_id: int
    amount: int
    balance: int
    debt: int


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """What a duplicate needs about the entry already written under its key."""

    id: int
    member_id: int
    kind: str
    amount: int
    base: int


@dataclass(frozen=True, slots=True)
class Break:
    """A member whose cached totals disagree with the ledger."""

    member_id: int
    balance: int
    debt: int
    open_lots: int
    entries: int
    bad_lots: int


@dataclass(frozen=True, slots=True)
class _Totals:
    balance: int
    debt: int


def expiry_key(lot_id: int) -> str:
    """The idempotency key of a lot's expiry entry."""
    return f"expire:lot:{lot_id}"


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _sql(conn: BaseDBAsyncClient, template: str) -> str:
    """Number the ``{}`` placeholders for asyncpg ($1, $2…) or make them ? for SQLite."""
    if conn.capabilities.dialect == "postgres":
        return template.format(*(f"${i}" for i in range(1, template.count("{}") + 1)))
    return template.replace("{}", "?")


_LOCK = (
    "UPDATE member SET points_balance = points_balance WHERE id = {} "
    "RETURNING points_balance, points_debt"
)
_DEBIT = (
    "UPDATE member SET points_balance = points_balance - {} "
    "WHERE id = {} AND points_balance >= {} RETURNING points_balance, points_debt"
)
_CREDIT_IF_NO_DEBT = (
    "UPDATE member SET points_balance = points_balance + {} "
    "WHERE id = {} AND points_debt = 0 RETURNING points_balance, points_debt"
)
_MOVE = (
    "UPDATE member SET points_balance = points_balance + {}, points_debt = points_debt + {} "
    "WHERE id = {} RETURNING points_balance, points_debt"
)


async def _member(conn: BaseDBAsyncClient, template: str, *values: int) -> _Totals | None:
    """Run one member UPDATE … RETURNING; None when no row matched."""
    rows = await conn.execute_query_dict(_sql(conn, template), list(values))
    if not rows:
        return None
    return _Totals(int(rows[0]["points_balance"]), int(rows[0]["points_debt"]))


async def _locked(conn: BaseDBAsyncClient, template: str, *values: int) -> _Totals:
    """Run one member UPDATE … RETURNING that must match: UnknownMember otherwise."""
    totals = await _member(conn, template, *values)
    if totals is None:
        raise UnknownMember(values[-1])  # every template ends with the member id
    return totals


async def _insert_entry(spec: EntrySpec) -> int:
    entry = await PointsEntry.create(
        member_id=spec.member_id,
        idempotency_key=spec.key,
        kind=spec.kind,
        amount=spec.amount,
        base=spec.base,
        tier_multiplier=spec.tier_multiplier,
        day_multiplier=spec.day_multiplier,
        reason=spec.reason[:128],
        source=spec.source[:32],
        ref=spec.ref[:128],
        created_at=spec.now,
    )
    return int(entry.id)


async def credit(spec: EntrySpec, expires_at: datetime) -> Effect:
    """Write an earning: its entry and lot; debt is settled first from the new lot."""
    async with in_transaction() as tx:
        entry_id = await _insert_entry(spec)
        settled = 0
        after = await _member(tx, _CREDIT_IF_NO_DEBT, spec.amount, spec.member_id)
        if after is None:
            locked = await _locked(tx, _LOCK, spec.member_id)
            settled = min(spec.amount, locked.debt)
            after = await _locked(tx, _MOVE, spec.amount - settled, -settled, spec.member_id)
        if spec.amount > 0:
            await _create_lot(spec, entry_id, expires_at, settled)
        return Effect(entry_id, spec.amount, after.balance, after.debt)


async def _create_lot(spec: EntrySpec, entry_id: int, expires_at: datetime, settled: int) -> None:
    """The earning's lot; what settled debt is allocated to the earning entry at once."""
    lot = await PointsLot.create(
        member_id=spec.member_id,
        entry_id=entry_id,
        amount=spec.amount,
        remaining=spec.amount - settled,
        expires_at=expires_at,
        created_at=spec.now,
    )
    if settled:
        await PointsAllocation.create(entry_id=entry_id, lot_id=lot.id, amount=settled)


async def debit(spec: EntrySpec, *, allow_debt: bool) -> Effect:
    """Write a spend (never below zero) or, with ``allow_debt``, a reversal."""
    async with in_transaction() as tx:
        entry_id = await _insert_entry(spec)
        if allow_debt:
            return await _reverse(tx, spec, entry_id)
        return await _spend(tx, spec, entry_id)


async def _spend(tx: BaseDBAsyncClient, spec: EntrySpec, entry_id: int) -> Effect:
    want = -spec.amount
    after = await _member(tx, _DEBIT, want, spec.member_id, want)
    if after is None:
        if await Member.exists(id=spec.member_id):
            raise InsufficientPoints(f"member {spec.member_id} cannot spend {want}")
        raise UnknownMember(spec.member_id)
    if await _allocate(entry_id, spec.member_id, want, spec.now) < want:
        # the balance still holds lots past their expiry that expire_due has not closed
        raise InsufficientPoints(f"member {spec.member_id} cannot spend {want} before expiry")
    return Effect(entry_id, spec.amount, after.balance, after.debt)


async def _reverse(tx: BaseDBAsyncClient, spec: EntrySpec, entry_id: int) -> Effect:
    want = -spec.amount
    locked = await _locked(tx, _LOCK, spec.member_id)
    taken = await _allocate(entry_id, spec.member_id, min(want, locked.balance), spec.now)
    after = await _locked(tx, _MOVE, -taken, want - taken, spec.member_id)
    return Effect(entry_id, spec.amount, after.balance, after.debt)


async def _allocate(entry_id: int, member_id: int, want: int, now: datetime) -> int:
    """Take up to ``want`` from the oldest-expiring open lots; how much was taken."""
    taken, allocations = 0, []
    while taken < want:
        lots = await _spendable_lots(member_id, now)
        for lot_id, remaining in lots:
            part = min(remaining, want - taken)
            await _take(lot_id, part)
            allocations.append(PointsAllocation(entry_id=entry_id, lot_id=lot_id, amount=part))
            taken += part
            if taken == want:
                break
        if len(lots) < _PAGE:
            break  # consumed lots drop out of the next page; a short page was the last
    if allocations:
        await PointsAllocation.bulk_create(allocations)
    return taken


async def _spendable_lots(member_id: int, now: datetime) -> list[tuple[int, int]]:
    rows = (
        await PointsLot.filter(
            member_id=member_id, closed_at__isnull=True, remaining__gt=0, expires_at__gt=_utc(now)
        )
        .order_by("expires_at", "id")
        .limit(_PAGE)
        .values_list("id", "remaining")
    )
    return [(int(lot_id), int(remaining)) for lot_id, remaining in rows]


async def _take(lot_id: int, part: int) -> None:
    changed = await PointsLot.filter(id=lot_id, closed_at__isnull=True, remaining__gte=part).update(
        remaining=F("remaining") - part
    )
    if changed != 1:
        raise LedgerConflict(f"lot {lot_id} changed under the member lock")


async def members_with_due_lots(now: datetime, after_id: int, limit: int) -> list[int]:
    """Members (by id, above ``after_id``) holding open lots whose expiry has come."""
    rows = (
        await PointsLot.filter(
            closed_at__isnull=True, expires_at__lte=_utc(now), member_id__gt=after_id
        )
        .distinct()
        .order_by("member_id")
        .limit(limit)
        .values_list("member_id")
    )
    return [int(row[0]) for row in rows]


async def expire_member(member_id: int, now: datetime) -> int:
    """Close the member's due lots; one keyed expiry entry per lot with points left."""
    async with in_transaction() as tx:
        if await _member(tx, _LOCK, member_id) is None:
            return 0
        lots = (
            await PointsLot.filter(
                member_id=member_id, closed_at__isnull=True, expires_at__lte=_utc(now)
            )
            .order_by("expires_at", "id")
            .values_list("id", "remaining")
        )  # entries in lot order
        allocations = [await _expiry(member_id, int(i), int(r), now) for i, r in lots if r]
        await _close([int(lot_id) for lot_id, _ in lots], now)
        if allocations:
            await PointsAllocation.bulk_create(allocations)
            expired = sum(allocation.amount for allocation in allocations)
            await _locked(tx, _MOVE, -expired, 0, member_id)
        return len(allocations)


async def _expiry(member_id: int, lot_id: int, remaining: int, now: datetime) -> PointsAllocation:
    spec = EntrySpec(
        member_id,
        expiry_key(lot_id),
        "expire",
        -remaining,
        now,
        "expired",
        "expiry",
        f"lot:{lot_id}",
    )
    return PointsAllocation(entry_id=await _insert_entry(spec), lot_id=lot_id, amount=remaining)


async def _close(lot_ids: list[int], now: datetime) -> None:
    if not lot_ids:
        return
    closed = await PointsLot.filter(id__in=lot_ids, closed_at__isnull=True).update(
        remaining=0, closed_at=now
    )
    if closed != len(lot_ids):
        raise LedgerConflict(f"lots {lot_ids} changed under the member lock")


async def find_entry(key: str) -> StoredEntry | None:
    """The entry written under an idempotency key."""
    rows = await PointsEntry.filter(idempotency_key=key).values_list(
        "id", "member_id", "kind", "amount", "base"
    )
    if not rows:
        return None
    entry_id, member_id, kind, amount, base = rows[0]
    return StoredEntry(int(entry_id), int(member_id), str(kind), int(amount), int(base))


async def totals(member_id: int) -> tuple[int, int] | None:
    """A member's (balance, debt), or None if there is no such member."""
    rows = await Member.filter(id=member_id).values_list("points_balance", "points_debt")
    return (int(rows[0][0]), int(rows[0][1])) if rows else None


async def member_exists(member_id: int) -> bool:
    """True if the member row exists."""
    return await Member.exists(id=member_id)


_RECONCILE = """
SELECT m.id AS member_id, m.points_balance AS balance, m.points_debt AS debt,
       COALESCE(l.open_remaining, 0) AS open_lots, COALESCE(e.total, 0) AS entries,
       COALESCE(b.bad, 0) AS bad_lots
FROM member m
LEFT JOIN (SELECT member_id, SUM(remaining) AS open_remaining FROM points_lot
           WHERE closed_at IS NULL GROUP BY member_id) l ON l.member_id = m.id
LEFT JOIN (SELECT member_id, SUM(amount) AS total FROM points_entry
           GROUP BY member_id) e ON e.member_id = m.id
LEFT JOIN (SELECT lot.member_id, COUNT(*) AS bad FROM points_lot lot
           LEFT JOIN (SELECT lot_id, SUM(amount) AS used FROM points_allocation
                      GROUP BY lot_id) a ON a.lot_id = lot.id
           WHERE lot.remaining < 0 OR lot.amount - lot.remaining <> COALESCE(a.used, 0)
              OR (lot.closed_at IS NOT NULL AND lot.remaining <> 0)
           GROUP BY lot.member_id) b ON b.member_id = m.id
WHERE m.points_balance <> COALESCE(l.open_remaining, 0)
   OR m.points_balance - m.points_debt <> COALESCE(e.total, 0)
   OR COALESCE(b.bad, 0) > 0
ORDER BY m.id
"""


async def reconcile() -> list[Break]:
    """Members whose cache or lots disagree with the ledger (one set-based query)."""
    # one statement reads one snapshot, so concurrent writers cannot tear it
    rows = await connections.get("default").execute_query_dict(_RECONCILE)
    return [Break(**{name: int(value) for name, value in row.items()}) for row in rows]


async def outstanding() -> int:
    """Σ balances: the points the brand owes its members."""
    rows = await Member.all().annotate(total=Sum("points_balance")).values("total")
    return _int(rows)


async def expiring_between(start: datetime, end: datetime, member_id: int | None = None) -> int:
    """Points left in open lots expiring in [start, end), for one member or all."""
    lots = PointsLot.filter(
        closed_at__isnull=True, expires_at__gte=_utc(start), expires_at__lt=_utc(end)
    )
    if member_id is not None:
        lots = lots.filter(member_id=member_id)
    return _int(await lots.annotate(total=Sum("remaining")).values("total"))


def _int(rows: list[dict[str, Any]]) -> int:
    return int(rows[0]["total"] or 0) if rows else 0
