"""Batched order writes for imports: one transaction per batch, the ledger's rules in bulk.

The batch takes its members' rows first (``SELECT … FOR UPDATE`` in id order on
PostgreSQL; a no-op UPDATE on SQLite, which takes the write lock), so the balances, debt,
growth and tiers it reads stay true until it commits; every other ledger writer takes the
same row before touching lots. Then it prices the orders in file order on those values
(the tier an earlier order raised prices the next one, as one-by-one calls would), and
writes orders, entries, lots, debt settlements, growth entries, member totals and audit
rows with a handful of multi-row statements. The unique keys still decide: an order or
entry that exists makes the whole batch fail (BatchClash), and the caller retries that
batch one order at a time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from asyncpg.exceptions import TransactionRollbackError  # type: ignore[import-untyped]
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from storage.models import PointsEntry, PointsLot
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


# Each write as (SQLite: one executemany statement, PostgreSQL: one statement over unnest()
# arrays, a single round trip for the whole batch). Parameters are the same rows.
_Write = tuple[str, str]

_BALANCES: _Write = (
    "UPDATE member SET points_balance = ?1, points_debt = ?2, growth = ?3, tier = ?4, "
    "last_active_at = CASE WHEN last_active_at IS NULL OR last_active_at < ?5 THEN ?5 "
    "ELSE last_active_at END WHERE id = ?6",
    "UPDATE member AS m SET points_balance = u.b, points_debt = u.d, growth = u.g, tier = u.t, "
    "last_active_at = CASE WHEN m.last_active_at IS NULL OR m.last_active_at < u.a THEN u.a "
    "ELSE m.last_active_at END FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], "
    "$4::varchar[], $5::timestamptz[], $6::bigint[]) AS u(b, d, g, t, a, id) WHERE m.id = u.id",
)
_ORDER: _Write = (
    "INSERT INTO orders (external_id, member_id, amount_fen, refunded_fen, channel, store, "
    "paid_at, points, points_reversed, growth, growth_reversed, fingerprint, source, "
    "created_at) VALUES (?, ?, ?, 0, ?, ?, ?, ?, 0, ?, 0, ?, 'import', ?)",
    "INSERT INTO orders (external_id, member_id, amount_fen, refunded_fen, channel, store, "
    "paid_at, points, points_reversed, growth, growth_reversed, fingerprint, source, "
    "created_at) SELECT e, m, a, 0, c, s, p, pt, 0, g, 0, f, 'import', ca FROM unnest("
    "$1::varchar[], $2::bigint[], $3::bigint[], $4::varchar[], $5::varchar[], "
    "$6::timestamptz[], $7::bigint[], $8::bigint[], $9::varchar[], $10::timestamptz[]) "
    "AS u(e, m, a, c, s, p, pt, g, f, ca)",
)
_ENTRY: _Write = (
    "INSERT INTO points_entry (member_id, idempotency_key, kind, amount, base, "
    "tier_multiplier, day_multiplier, reason, source, ref, created_at) "
    "VALUES (?, ?, 'earn', ?, ?, ?, ?, 'order', 'order', ?, ?)",
    "INSERT INTO points_entry (member_id, idempotency_key, kind, amount, base, "
    "tier_multiplier, day_multiplier, reason, source, ref, created_at) "
    "SELECT m, k, 'earn', a, b, t, d, 'order', 'order', r, c FROM unnest($1::bigint[], "
    "$2::varchar[], $3::bigint[], $4::bigint[], $5::int[], $6::int[], $7::varchar[], "
    "$8::timestamptz[]) AS u(m, k, a, b, t, d, r, c)",
)
_LOT: _Write = (
    "INSERT INTO points_lot (member_id, entry_id, amount, remaining, expires_at, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?)",
    "INSERT INTO points_lot (member_id, entry_id, amount, remaining, expires_at, created_at) "
    "SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], "
    "$5::timestamptz[], $6::timestamptz[])",
)
_ALLOCATION: _Write = (
    "INSERT INTO points_allocation (entry_id, lot_id, amount) VALUES (?, ?, ?)",
    "INSERT INTO points_allocation (entry_id, lot_id, amount) "
    "SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[])",
)
_GROWTH: _Write = (
    "INSERT INTO growth_entry (member_id, idempotency_key, amount, reason, source, created_at) "
    "VALUES (?, ?, ?, 'order', 'order', ?)",
    "INSERT INTO growth_entry (member_id, idempotency_key, amount, reason, source, created_at) "
    "SELECT m, k, a, 'order', 'order', c FROM unnest($1::bigint[], $2::varchar[], "
    "$3::bigint[], $4::timestamptz[]) AS u(m, k, a, c)",
)
_AUDIT: _Write = (
    "INSERT INTO audit_log (actor, action, target, detail, at) VALUES (?, ?, ?, ?, ?)",
    "INSERT INTO audit_log (actor, action, target, detail, at) "
    "SELECT a, n, t, d::jsonb, w FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], "
    "$4::text[], $5::timestamptz[]) AS u(a, n, t, d, w)",
)


async def _write(tx: BaseDBAsyncClient, statement: _Write, rows: list[list[Any]]) -> None:
    """Write the rows with one statement on PostgreSQL, one executemany on SQLite."""
    if not rows:
        return
    sqlite, postgres = statement
    if tx.capabilities.dialect == "postgres":
        await tx.execute_query(postgres, [list(column) for column in zip(*rows, strict=True)])
    else:
        await tx.execute_many(sqlite, rows)


@dataclass(slots=True)
class _Rows:
    """The batch's rows as statement parameters (raw multi-row writes: building ORM
    objects cost more than the database work)."""

    orders: list[list[Any]] = field(default_factory=list)
    entries: list[list[Any]] = field(default_factory=list)
    settled: dict[str, int] = field(default_factory=dict)  # entry key → debt it settled
    growth: list[list[Any]] = field(default_factory=list)
    audit: list[list[Any]] = field(default_factory=list)
    upgrades: dict[int, tuple[str, str, int, str, Upgrade]] = field(default_factory=dict)


class BatchClash(Exception):
    """Nothing was written: another writer recorded one of the batch's orders (a unique
    key failed) or PostgreSQL broke a deadlock with it (an API call recording the same
    order waits on a member row the batch holds while the batch waits on that order)."""


async def write_batch(
    orders: Sequence[ImportOrder], rules: BatchRules, now: datetime
) -> tuple[list[Pricing], list[Upgrade]]:
    """Write new orders in one transaction; what each earned and the tiers raised.

    BatchClash (nothing written) when it races another writer. A member raised more than
    once in a batch gets one upgrade row, from the first tier to the last.
    """
    try:
        return await _write_batch(orders, rules, now)
    except (IntegrityError, TransactionRollbackError) as error:
        raise BatchClash(str(error)) from error


async def _write_batch(
    orders: Sequence[ImportOrder], rules: BatchRules, now: datetime
) -> tuple[list[Pricing], list[Upgrade]]:
    at = utc(now)
    async with in_transaction() as tx:
        states = await _lock(tx, [o.member_id for o in orders])
        priced: list[Pricing] = []
        rows = _Rows()
        for order in orders:
            priced.append(_price(order, states[order.member_id], rules, rows, at))
        await _write(tx, _ORDER, rows.orders)
        if rows.entries:
            await _write(tx, _ENTRY, rows.entries)
            await _lots(tx, rows, utc(rules.expires_at), at)
        await _write(tx, _GROWTH, rows.growth)
        balances = [
            [s.balance, s.debt, s.growth, s.tier, utc(seen), member_id]
            for member_id, s in states.items()
            if (seen := s.last_active) is not None
        ]
        await _write(tx, _BALANCES, balances)
        for member_id, (old, new, growth, key, _) in rows.upgrades.items():
            detail = {"from": old, "to": new, "growth": growth, "key": key}
            # the row storage.repos.tiers.write_growth writes, so a notice can find it
            rows.audit.append(["order", UPGRADE, member_target(member_id), _json(detail), at])
        await _write(tx, _AUDIT, rows.audit)
        return priced, [up for *_, up in rows.upgrades.values()]


def _price(
    order: ImportOrder, state: _State, rules: BatchRules, rows: _Rows, at: datetime
) -> Pricing:
    """Price one order on the member's running state and queue its rows."""
    price = rules.price(state.tier, order.amount_fen, order.paid_at)
    key = rules.key(order.external_id)
    rows.orders.append(
        [
            order.external_id, order.member_id, order.amount_fen, order.channel, order.store,
            utc(order.paid_at), price.points, price.growth, order.fingerprint, at,
        ]
    )  # fmt: skip
    if price.points:
        settled = min(price.points, state.debt)
        state.debt -= settled
        state.balance += price.points - settled
        rows.settled[key] = settled
        rows.entries.append(
            [
                order.member_id, key, price.points, price.base, price.tier_multiplier,
                price.day_multiplier, order.external_id, at,
            ]
        )  # fmt: skip
    if price.growth:
        state.growth += price.growth
        rows.growth.append([order.member_id, key, price.growth, at])
        target = rules.raise_tier(state.growth, state.tier)
        if target is not None and target != state.tier:
            first = rows.upgrades.get(order.member_id)
            old = first[0] if first else state.tier
            up = Upgrade(order.member_id, order.external_id, price.growth)
            rows.upgrades[order.member_id] = (old, target, state.growth, key, up)
            state.tier = target
    active = min(order.paid_at, at)
    if state.last_active is None or active > state.last_active:
        state.last_active = active
    detail = {
        "member": order.member_code,
        "amount_fen": order.amount_fen,
        "points": price.points,
        "growth": price.growth,
        "base": price.base,
        "tier_multiplier": price.tier_multiplier,
        "day_multiplier": price.day_multiplier,
        "source": "import",
    }
    rows.audit.append([rules.actor, CREATE, order_target(order.external_id), _json(detail), at])
    return price


def _json(detail: dict[str, Any]) -> str:
    return json.dumps(detail, ensure_ascii=False, separators=(",", ":"))


async def _lots(tx: BaseDBAsyncClient, rows: _Rows, expires_at: datetime, at: datetime) -> None:
    keys = [entry[1] for entry in rows.entries]
    ids = dict(
        await PointsEntry.filter(idempotency_key__in=keys).values_list("idempotency_key", "id")
    )
    lots = [
        [member_id, ids[key], amount, amount - rows.settled[key], expires_at, at]
        for member_id, key, amount, *_ in rows.entries
    ]
    await _write(tx, _LOT, lots)
    settled = {int(ids[k]): n for k, n in rows.settled.items() if n}
    if not settled:
        return
    # debt settled from a new lot is allocated to its own earning at once (DESIGN §3)
    lot_ids = await PointsLot.filter(entry_id__in=list(settled)).values_list("entry_id", "id")
    await _write(
        tx,
        _ALLOCATION,
        [[int(entry_id), int(lot_id), settled[int(entry_id)]] for entry_id, lot_id in lot_ids],
    )
