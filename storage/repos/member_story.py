"""Read-only queries for a member's commerce story: orders, refunds, redemptions, coupons."""

from __future__ import annotations

from typing import Any

from tortoise.functions import Count, Sum

from storage.models import Coupon, Order, OrderRefund, Redemption


async def orders(member_id: int, limit: int) -> list[dict[str, Any]]:
    """The member's latest orders (by payment time), newest first."""
    return await (
        Order.filter(member_id=member_id)
        .order_by("-paid_at", "-id")
        .limit(limit)
        .values(
            "external_id",
            "amount_fen",
            "refunded_fen",
            "points",
            "points_reversed",
            "growth",
            "growth_reversed",
            "channel",
            "store",
            "paid_at",
        )
    )


async def order_totals(member_id: int) -> dict[str, int]:
    """Count of the member's orders, Σ paid and Σ refunded (fen)."""
    rows = (
        await Order.filter(member_id=member_id)
        .annotate(n=Count("id"), paid=Sum("amount_fen"), refunded=Sum("refunded_fen"))
        .values("n", "paid", "refunded")
    )
    row = rows[0] if rows else {}
    return {
        "orders": int(row.get("n") or 0),
        "paid_fen": int(row.get("paid") or 0),
        "refunded_fen": int(row.get("refunded") or 0),
    }


async def refunds(member_id: int, limit: int) -> list[dict[str, Any]]:
    """Refunds of the member's orders, newest first."""
    return await (
        OrderRefund.filter(order__member_id=member_id)
        .order_by("-created_at", "-id")
        .limit(limit)
        .values(
            "order__external_id",
            "refund_id",
            "amount_fen",
            "points_reversed",
            "growth_reversed",
            "created_at",
        )
    )


async def redemptions(member_id: int, limit: int) -> list[dict[str, Any]]:
    """The member's reward redemptions, newest first."""
    return await (
        Redemption.filter(member_id=member_id)
        .order_by("-created_at", "-id")
        .limit(limit)
        .values("id", "reward__code", "reward__name", "points", "channel", "created_at")
    )


async def coupons(member_id: int, limit: int) -> list[dict[str, Any]]:
    """The member's coupons, newest first, with the order each was used on."""
    return await (
        Coupon.filter(member_id=member_id)
        .order_by("-created_at", "-id")
        .limit(limit)
        .values(
            "code",
            "name",
            "state",
            "value_fen",
            "discount",
            "valid_from",
            "valid_to",
            "used_at",
            "used_order_id",
            "redemption_id",
        )
    )
