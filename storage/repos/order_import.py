"""Batched order writes for imports: one transaction per batch, the ledger's rules in bulk.

The batch takes its members' rows first (``SELECT … FOR UPDATE`` in id order on
PostgreSQL; a no-op UPDATE on SQLite, which takes the write lock), so the balances, debt,
growth and tiers it reads stay true until it commits; every other ledger writer takes the
same row before touching lots. Then it prices the orders in file order on those values
(the tier an earlier order raised prices the next one, as one-by-one calls would), and
writes orders, entries, lots, debt settlements, growth entries, member totals and audit
rows with a handful of multi-row statements. The unique keys still decide: an order or
entry that exists makes the whole batch fail with IntegrityError, and the caller retries
that batch one order at a time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from storage.models import (
    AuditLog,
    GrowthEntry,
    Order,
    PointsAllocation,
    PointsEntry,
    PointsLot,
)
from storage.repos.orders import CREATE, Pricing, order_target
from storage.repos.tiers import UPGRADE, member_target
from storage.timeutil import utc


@dataclass(frozen=True, slots=True)
class ImportOrder:
    """One new order of a batch, its member resolved."""

    external_id: str
    member_id: int
    member_code: str
    amount_fen: int
    channel: str
    store: str
    paid_at: datetime
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Upgrade:
    """A tier an order's growth raised (its notice goes out after the commit)."""

    member_id: int
    external_id: str
    growth: int


@dataclass(slots=True)
class _State:
    balance: int
    debt: int
    growth: int
    tier: str
    last_active: datetime | None = None


@dataclass(frozen=True, slots=True)
class BatchRules:
    """The caller's pricing and tier rules, and the ledger's key and expiry."""

    price: Callable[[str, int, datetime], Pricing]
    raise_tier: Callable[[int, str], str | None]
    key: Callable[[str], str]
    expires_at: datetime
    actor: str


_LOCK_PG = (
    "SELECT id, points_balance, points_debt, growth, tier FROM member "
    "WHERE id = ANY($1) ORDER BY id FOR UPDATE"
)
# SQLite: a no-op write takes the database's write lock; ids travel as one JSON array
_LOCK_SQLITE = (
    "UPDATE member SET points_balance = points_balance WHERE id IN (SELECT value FROM json_each(?))"
)
_READ_SQLITE = (
    "SELECT id, points_balance, points_debt, growth, tier FROM member "
    "WHERE id IN (SELECT value FROM json_each(?))"
)


async def _lock(tx: BaseDBAsyncClient, member_ids: list[int]) -> dict[int, _State]:
    ids = sorted(set(member_ids))
    if tx.capabilities.dialect == "postgres":
        rows = await tx.execute_query_dict(_LOCK_PG, [ids])
    else:
        await tx.execute_query(_LOCK_SQLITE, [json.dumps(ids)])
        rows = await tx.execute_query_dict(_READ_SQLITE, [json.dumps(ids)])
    return {
        int(r["id"]): _State(
            int(r["points_balance"]), int(r["points_debt"]), int(r["growth"]), str(r["tier"])
        )
        for r in rows
    }


_BALANCES = (
    "UPDATE member SET points_balance = {}, points_debt = {}, growth = {}, tier = {}, "
    "last_active_at = CASE WHEN last_active_at IS NULL OR last_active_at < {} THEN {} "
    "ELSE last_active_at END WHERE id = {}"
)


def _numbered(conn: BaseDBAsyncClient, template: str) -> str:
    if conn.capabilities.dialect == "postgres":
        return template.format(*(f"${i}" for i in range(1, template.count("{}") + 1)))
    return template.replace("{}", "?")


async def write_batch(
    orders: Sequence[ImportOrder], rules: BatchRules, now: datetime
) -> tuple[list[Pricing], list[Upgrade]]:
    """Write new orders in one transaction; what each earned and the tiers raised.

    IntegrityError (nothing written) when an order or entry key already exists.
    """
    async with in_transaction() as tx:
        states = await _lock(tx, [o.member_id for o in orders])
        priced, upgrades = [], []
        rows, entries, growth_rows, audit = [], [], [], []
        settle: dict[str, int] = {}
        for order in orders:
            state = states[order.member_id]
            price = rules.price(state.tier, order.amount_fen, order.paid_at)
            priced.append(price)
            key = rules.key(order.external_id)
            rows.append(_order_row(order, price, now))
            if price.points:
                settled = min(price.points, state.debt)
                state.debt -= settled
                state.balance += price.points - settled
                settle[key] = settled
                entries.append(_entry(order, price, key, now))
            if price.growth:
                state.growth += price.growth
                growth_rows.append(
                    GrowthEntry(
                        member_id=order.member_id,
                        idempotency_key=key,
                        amount=price.growth,
                        reason="order",
                        source="order",
                        created_at=now,
                    )
                )
                target = rules.raise_tier(state.growth, state.tier)
                if target is not None and target != state.tier:
                    audit.append(_upgrade_row(order, state, target, key, now))
                    upgrades.append(Upgrade(order.member_id, order.external_id, price.growth))
                    state.tier = target
            active = min(order.paid_at, now)
            if state.last_active is None or active > state.last_active:
                state.last_active = active
            audit.append(_create_row(order, price, rules.actor, now))
        await Order.bulk_create(rows, batch_size=500)
        if entries:
            await PointsEntry.bulk_create(entries, batch_size=500)
            await _lots(entries, settle, rules.expires_at, now)
        if growth_rows:
            await GrowthEntry.bulk_create(growth_rows, batch_size=500)
        await tx.execute_many(
            _numbered(tx, _BALANCES),
            [
                [s.balance, s.debt, s.growth, s.tier, utc(seen), utc(seen), member_id]
                for member_id, s in states.items()
                if (seen := s.last_active) is not None
            ],
        )
        await AuditLog.bulk_create(audit, batch_size=500)
        return priced, upgrades


async def _lots(
    entries: list[PointsEntry], settle: dict[str, int], expires_at: datetime, now: datetime
) -> None:
    keys = [e.idempotency_key for e in entries]
    ids = dict(
        await PointsEntry.filter(idempotency_key__in=keys).values_list("idempotency_key", "id")
    )
    lots = [
        PointsLot(
            member_id=e.member_id,  # type: ignore[attr-defined]
            entry_id=ids[e.idempotency_key],
            amount=e.amount,
            remaining=e.amount - settle[e.idempotency_key],
            expires_at=expires_at,
            created_at=now,
        )
        for e in entries
    ]
    await PointsLot.bulk_create(lots, batch_size=500)
    settled = {ids[k]: n for k, n in settle.items() if n}
    if not settled:
        return
    # debt settled from a new lot is allocated to its own earning at once (DESIGN §3)
    lot_ids = await PointsLot.filter(entry_id__in=list(settled)).values_list("entry_id", "id")
    await PointsAllocation.bulk_create(
        [
            PointsAllocation(entry_id=entry_id, lot_id=lot_id, amount=settled[entry_id])
            for entry_id, lot_id in lot_ids
        ]
    )


def _order_row(order: ImportOrder, price: Pricing, now: datetime) -> Order:
    return Order(
        external_id=order.external_id,
        member_id=order.member_id,
        amount_fen=order.amount_fen,
        channel=order.channel,
        store=order.store,
        paid_at=order.paid_at,
        points=price.points,
        growth=price.growth,
        fingerprint=order.fingerprint,
        source="import",
        created_at=now,
    )


def _entry(order: ImportOrder, price: Pricing, key: str, now: datetime) -> PointsEntry:
    return PointsEntry(
        member_id=order.member_id,
        idempotency_key=key,
        kind="earn",
        amount=price.points,
        base=price.base,
        tier_multiplier=price.tier_multiplier,
        day_multiplier=price.day_multiplier,
        reason="order",
        source="order",
        ref=order.external_id,
        created_at=now,
    )


def _create_row(order: ImportOrder, price: Pricing, actor: str, now: datetime) -> AuditLog:
    return AuditLog(
        actor=actor,
        action=CREATE,
        target=order_target(order.external_id),
        detail={
            "member": order.member_code,
            "amount_fen": order.amount_fen,
            "points": price.points,
            "growth": price.growth,
            "base": price.base,
            "tier_multiplier": price.tier_multiplier,
            "day_multiplier": price.day_multiplier,
            "source": "import",
        },
        at=now,
    )


def _upgrade_row(
    order: ImportOrder, state: _State, target: str, key: str, now: datetime
) -> AuditLog:
    # the same row storage.repos.tiers.write_growth writes, so its notice finds it
    return AuditLog(
        actor="order",
        action=UPGRADE,
        target=member_target(order.member_id),
        detail={"from": state.tier, "to": target, "growth": state.growth, "key": key},
        at=now,
    )
