"""Coupons: issue, use at the till, restore on refund, expire (state changes are
conditional updates, so two tills racing for one coupon cannot both win)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from storage.models import Coupon
from storage.timeutil import utc

__all__ = [
    "ALPHABET",
    "CouponRefused",
    "Use",
    "expire_due",
    "find",
    "issue",
    "new_code",
    "page",
    "restore_for_order",
    "unused_for_member",
    "use",
    "void",
]


async def restore_for_order(order_external_id: str, now: datetime) -> list[str]:
    """Give back the coupons used on an order refunded in full; the codes restored.

    A coupon still inside its validity is ``issued`` again; one past ``valid_to`` is
    ``expired``. Call it inside the refund's transaction.
    """
    used = await Coupon.filter(used_order_id=order_external_id, state="used").values_list(
        "id", "code", "valid_to"
    )
    restored: list[str] = []
    for coupon_id, code, valid_to in used:
        state = "issued" if utc(valid_to) > utc(now) else "expired"
        changed = await Coupon.filter(id=coupon_id, state="used").update(
            state=state, used_at=None, used_order_id=None, used_by=""
        )
        if changed:
            restored.append(str(code))
    return restored


# --- issue -----------------------------------------------------------------------------

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: read aloud and typed at tills
CODE_LENGTH = 10
_ATTEMPTS = 8


def new_code() -> str:
    """A coupon code from the CSPRNG: 10 characters, 50 bits."""
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


async def issue(
    *,
    member_id: int,
    name: str,
    value_fen: int,
    discount: int,
    valid_from: datetime,
    valid_to: datetime,
    now: datetime,
    reward_id: int | None = None,
    redemption_id: int | None = None,
    source: str = "redemption",
    code: Callable[[], str] = new_code,
) -> Coupon:
    """Insert a coupon under a fresh code; a (rare) clash of codes draws again.

    Each attempt is a savepoint, so a clash does not abort the caller's transaction.
    """
    for _ in range(_ATTEMPTS):
        try:
            async with in_transaction():
                return await Coupon.create(
                    code=code(),
                    member_id=member_id,
                    reward_id=reward_id,
                    redemption_id=redemption_id,
                    name=name,
                    value_fen=value_fen,
                    discount=discount,
                    valid_from=valid_from,
                    valid_to=valid_to,
                    state="issued",
                    source=source,
                    created_at=now,
                )
        except IntegrityError:
            continue
    raise RuntimeError(f"no free coupon code after {_ATTEMPTS} draws")


# --- use at the till -------------------------------------------------------------------


class CouponRefused(Exception):
    """A coupon that may not be used: ``reason`` is used, expired, voided or not_yet_valid."""

    def __init__(self, reason: str, coupon: Coupon) -> None:
        super().__init__(reason)
        self.reason = reason
        self.coupon = coupon


@dataclass(frozen=True, slots=True)
class Use:
    """A coupon used on an order (``duplicate``: it already was, on this same order)."""

    coupon: Coupon
    duplicate: bool


async def find(code: str) -> Coupon | None:
    """A coupon by code (case-insensitive), with its member and reward."""
    return await Coupon.get_or_none(code=code.strip().upper()).prefetch_related("member", "reward")


async def use(code: str, order_id: str, now: datetime, used_by: str) -> Use | None:
    """Mark a coupon used on an order: a conditional update (issued, inside its validity).

    None for an unknown code. The same coupon on the same order again answers the first
    use (``duplicate``); anything else that prevents use raises CouponRefused.
    """
    normal, at = code.strip().upper(), utc(now)
    changed = await Coupon.filter(
        code=normal, state="issued", valid_from__lte=at, valid_to__gt=at
    ).update(state="used", used_at=at, used_order_id=order_id, used_by=used_by[:64])
    coupon = await find(normal)
    if coupon is None:
        return None
    if changed:
        return Use(coupon, duplicate=False)
    if coupon.state == "used":
        if coupon.used_order_id == order_id:
            return Use(coupon, duplicate=True)
        raise CouponRefused("used", coupon)
    if coupon.state == "voided":
        raise CouponRefused("voided", coupon)
    if coupon.state == "expired" or utc(coupon.valid_to) <= at:
        raise CouponRefused("expired", coupon)
    if utc(coupon.valid_from) > at:
        raise CouponRefused("not_yet_valid", coupon)
    return await use(code, order_id, now, used_by)  # restored between update and read


async def void(code: str, now: datetime) -> tuple[Coupon | None, bool]:
    """Void an issued coupon (conditional): the coupon as it is now (None if unknown) and
    whether this call voided it."""
    normal = code.strip().upper()
    changed = await Coupon.filter(code=normal, state="issued").update(
        state="voided", voided_at=utc(now)
    )
    return await find(normal), bool(changed)


# --- expiry and listings ---------------------------------------------------------------


async def expire_due(now: datetime) -> int:
    """Mark every issued coupon past ``valid_to`` expired (one set-based update); how many."""
    return await Coupon.filter(state="issued", valid_to__lte=utc(now)).update(state="expired")


async def unused_for_member(member_id: int, now: datetime, limit: int = 20) -> list[Coupon]:
    """The member's issued coupons still valid at ``now``, soonest to expire first."""
    return (
        await Coupon.filter(member_id=member_id, state="issued", valid_to__gt=utc(now))
        .order_by("valid_to", "id")
        .limit(limit)
    )


async def page(
    *,
    member_code: str | None = None,
    state: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[Coupon]:
    """Coupons newest first, filtered, ``limit + 1`` rows (the extra one means more)."""
    rows = Coupon.all().prefetch_related("member", "reward")
    if member_code is not None:
        rows = rows.filter(member__code=member_code)
    if state is not None:
        rows = rows.filter(state=state)
    if before_id is not None:
        rows = rows.filter(id__lt=before_id)
    return await rows.order_by("-id").limit(limit + 1)
