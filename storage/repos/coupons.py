"""Coupons: issue, use at the till, restore on refund, expire (state changes are
conditional updates, so two tills racing for one coupon cannot both win)."""

from __future__ import annotations

from datetime import datetime

from storage.models import Coupon
from storage.timeutil import utc

__all__ = ["restore_for_order"]


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
