"""Orders and their refunds: the unique keys decide duplicates, the order row serialises refunds.

``orders.external_id`` is unique, so two deliveries of one order race on that insert and
one wins; ``(order, refund_id)`` is unique for refunds. A refund adds to the order's
``refunded_fen`` with a conditional ``UPDATE … RETURNING``: that takes the order's row
lock (PostgreSQL) or the write lock (SQLite) and refuses to pass the order's amount, so
two refunds at once take turns and the second sees what the first reversed.

Times are bound in UTC (storage.timeutil).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from storage.models import AuditLog, Identity, Member, Order, OrderRefund, PointsEntry
from storage.models.members import MOBILE_HASH
from storage.repos.members import new_member_code
from storage.timeutil import utc

CREATE = "order.create"
REFUND = "order.refund"


@dataclass(frozen=True, slots=True)
class Totals:
    """An order's money and what refunds took back, read under its row lock."""

    amount_fen: int
    refunded_fen: int
    points: int
    points_reversed: int
    growth: int
    growth_reversed: int


@dataclass(frozen=True, slots=True)
class Pricing:
    """What an order earns: base points, the multipliers (per mille), points and growth."""

    base: int
    tier_multiplier: int
    day_multiplier: int
    points: int
    growth: int


@dataclass(frozen=True, slots=True)
class Holder:
    """The member an order belongs to, as pricing needs it."""

    id: int
    code: str
    tier: str
    created: bool = False


def order_target(external_id: str) -> str:
    """The AuditLog target naming an order."""
    return f"order:{external_id}"


def _sql(conn: BaseDBAsyncClient, template: str) -> str:
    """Number the ``{}`` placeholders for asyncpg ($1, $2…) or make them ? for SQLite."""
    if conn.capabilities.dialect == "postgres":
        return template.format(*(f"${i}" for i in range(1, template.count("{}") + 1)))
    return template.replace("{}", "?")


# --- members -----------------------------------------------------------------------------


async def holder_by_identity(kind: str, app: str | None, value: str) -> Holder | None:
    """The member holding an identity (any app when ``app`` is None)."""
    rows = Identity.filter(kind=kind, value=value)
    if app is not None:
        rows = rows.filter(app=app)
    found = await rows.limit(1).values_list("member_id")
    return await holder_by_id(int(found[0][0])) if found else None


async def holder_by_code(code: str) -> Holder | None:
    """The member with this public code."""
    rows = await Member.filter(code=code.strip().upper()).values_list("id")
    return await holder_by_id(int(rows[0][0])) if rows else None


async def holder_by_id(member_id: int) -> Holder | None:
    """The member by id; a merged member's survivor; None for an erased (注销) member."""
    for _ in range(4):  # merges chain at most a few times
        rows = await Member.filter(id=member_id).values_list(
            "id", "code", "tier", "merged_into_id", "status"
        )
        if not rows or rows[0][4] == "deleted":
            return None
        found, code, tier, merged_into, _status = rows[0]
        if merged_into is None:
            return Holder(int(found), str(code), str(tier))
        member_id = int(merged_into)
    return None


async def create_mobile_member(cipher: str, digest: str, now: datetime, channel: str) -> Holder:
    """A member holding only this mobile number; the existing one if another call won.

    One transaction, two inserts; ``member.mobile_hash`` and the identity key are unique,
    so a concurrent creator makes this one fail and we read theirs (a code clash draws
    again).
    """
    for _ in range(5):
        code = new_member_code()
        try:
            async with in_transaction():
                member = await Member.create(
                    code=code,
                    created_at=now,
                    channel=channel[:64],
                    mobile_cipher=cipher,
                    mobile_hash=digest,
                )
                await Identity.create(
                    kind=MOBILE_HASH, app="", value=digest, member_id=member.id, created_at=now
                )
                return Holder(int(member.id), code, str(member.tier), created=True)
        except IntegrityError:
            existing = await holder_by_identity(MOBILE_HASH, "", digest)
            if existing is not None:
                return existing
    raise RuntimeError("could not create a member for this mobile number")


_TOUCH = (
    "UPDATE member SET last_active_at = {} "
    "WHERE id = {} AND (last_active_at IS NULL OR last_active_at < {})"
)


async def touch_member(member_id: int, at: datetime) -> None:
    """Move the member's last activity forward to ``at`` (never back)."""
    conn = connections.get("default")
    await conn.execute_query(_sql(conn, _TOUCH), [utc(at), member_id, utc(at)])


async def totals_of(member_id: int) -> tuple[int, int]:
    """The member's (points balance, debt)."""
    rows = await Member.filter(id=member_id).values_list("points_balance", "points_debt")
    return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)


# --- orders ------------------------------------------------------------------------------


async def find(external_id: str) -> Order | None:
    """The order with this external id."""
    return await Order.get_or_none(external_id=external_id)


async def insert(values: dict[str, Any]) -> Order:
    """Insert an order row; IntegrityError when the external id exists."""
    return await Order.create(**values)


async def entry_multipliers(key: str) -> tuple[int, int, int] | None:
    """(base, tier multiplier, day multiplier) recorded on the entry under ``key``."""
    rows = await PointsEntry.filter(idempotency_key=key).values_list(
        "base", "tier_multiplier", "day_multiplier"
    )
    return (int(rows[0][0]), int(rows[0][1]), int(rows[0][2])) if rows else None


# --- refunds -----------------------------------------------------------------------------


async def refunds_of(order_id: int) -> list[OrderRefund]:
    """The order's refunds, oldest first."""
    return await OrderRefund.filter(order_id=order_id).order_by("id")


async def find_refund(order_id: int, refund_id: str) -> OrderRefund | None:
    """One refund of an order by the caller's refund id."""
    return await OrderRefund.get_or_none(order_id=order_id, refund_id=refund_id)


async def insert_refund(order_id: int, refund_id: str, amount_fen: int, now: datetime) -> int:
    """Insert a refund row (IntegrityError when its refund id exists); its id."""
    row = await OrderRefund.create(
        order_id=order_id, refund_id=refund_id, amount_fen=amount_fen, created_at=now
    )
    return int(row.id)


_ADD_REFUND = (
    "UPDATE orders SET refunded_fen = refunded_fen + {} "
    "WHERE id = {} AND refunded_fen + {} <= amount_fen "
    "RETURNING amount_fen, refunded_fen, points, points_reversed, growth, growth_reversed"
)
_SET_REVERSED = "UPDATE orders SET points_reversed = {}, growth_reversed = {} WHERE id = {}"


async def add_refunded(tx: BaseDBAsyncClient, order_id: int, amount_fen: int) -> Totals | None:
    """Add a refund to the order under its row lock; None if it would pass the amount."""
    rows = await tx.execute_query_dict(_sql(tx, _ADD_REFUND), [amount_fen, order_id, amount_fen])
    if not rows:
        return None
    return Totals(**{name: int(value) for name, value in rows[0].items()})


async def set_reversed(tx: BaseDBAsyncClient, order_id: int, points: int, growth: int) -> None:
    """Record what refunds have taken back in total (still under the row lock)."""
    await tx.execute_query(_sql(tx, _SET_REVERSED), [points, growth, order_id])


async def set_refund_reversed(refund_id: int, points: int, growth: int) -> None:
    """What one refund took back."""
    await OrderRefund.filter(id=refund_id).update(points_reversed=points, growth_reversed=growth)


async def restored_by(external_id: str, refund_id: str) -> list[str]:
    """The coupon codes a refund restored (from its audit row)."""
    rows = await AuditLog.filter(action=REFUND, target=order_target(external_id)).values("detail")
    for row in rows:
        detail = row["detail"]
        if isinstance(detail, dict) and detail.get("refund_id") == refund_id:
            return [str(code) for code in detail.get("restored_coupons", [])]
    return []
