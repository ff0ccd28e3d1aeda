"""``/api/coupons``: list and look up coupons, use one at the till (核销), void one.

Use is a conditional update (issued → used while ``valid_from <= now < valid_to``), so
two tills racing for one coupon cannot both win, and it is idempotent on the order id:
the same coupon on the same order again answers 200 with ``duplicate: true``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.admin.api import ApiCall, ApiError, ApiRoutes, not_found
from storage.models import Coupon
from storage.repos import audit_log, coupons

routes = ApiRoutes(tag="coupons")

State = Literal["issued", "used", "expired", "voided"]
_REFUSALS = {
    "used": (409, "coupon_used", "coupon {code} was used on another order"),
    "expired": (409, "coupon_expired", "coupon {code} has expired"),
    "voided": (409, "coupon_voided", "coupon {code} was voided"),
    "not_yet_valid": (409, "coupon_not_yet_valid", "coupon {code} is not valid yet"),
}


class CouponOut(BaseModel):
    code: str
    member_code: str
    reward_code: str | None
    name: str
    value_fen: int
    discount: int = Field(description="per mille of the price paid (850: 15% off); 0: a value")
    valid_from: datetime
    valid_to: datetime = Field(description="exclusive: valid while now < valid_to")
    state: State
    used_at: datetime | None
    used_order_id: str | None
    created_at: datetime


class CouponQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    member_code: str | None = Field(default=None, max_length=16)
    state: State | None = None
    before_id: int | None = Field(default=None, ge=1, description="page: ids below this one")
    limit: int = Field(default=50, ge=1, le=500)


class CouponPage(BaseModel):
    items: list[CouponOut]
    next_before_id: int | None = Field(description="pass as before_id for the next page")


class UseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(min_length=1, max_length=128, description="the till's order id")
    store: str | None = Field(default=None, max_length=64)
    amount_fen: int | None = Field(default=None, ge=0, le=10**12, description="order amount")


class UseAnswer(BaseModel):
    coupon: CouponOut
    order_id: str
    duplicate: bool = Field(description="already used on this order: the first use's answer")
    discount_fen: int | None = Field(description="off amount_fen (when given), rounded down")


def out(c: Coupon) -> CouponOut:
    """The API view of a coupon (member and reward prefetched)."""
    return CouponOut(
        code=c.code,
        member_code=c.member.code,
        reward_code=c.reward.code if c.reward is not None else None,
        name=c.name,
        value_fen=c.value_fen,
        discount=c.discount,
        valid_from=c.valid_from,
        valid_to=c.valid_to,
        state=c.state,
        used_at=c.used_at,
        used_order_id=c.used_order_id,
        created_at=c.created_at,
    )


def discount_fen(coupon: Coupon, amount_fen: int | None) -> int | None:
    """What the coupon takes off an amount: its value (at most the amount) or the discount."""
    if amount_fen is None:
        return None
    if coupon.discount:
        return amount_fen * (1000 - int(coupon.discount)) // 1000
    return min(int(coupon.value_fen), amount_fen)


@routes.route(
    "GET",
    "/api/coupons",
    roles=("manager", "staff"),
    summary="List coupons",
    query=CouponQuery,
    response=CouponPage,
)
async def list_coupons(call: ApiCall) -> CouponPage:
    query: CouponQuery = call.query
    found = await coupons.page(
        member_code=query.member_code,
        state=query.state,
        before_id=query.before_id,
        limit=query.limit,
    )
    more = len(found) > query.limit
    shown = found[: query.limit]
    return CouponPage(
        items=[out(c) for c in shown], next_before_id=int(shown[-1].id) if more else None
    )


@routes.route(
    "GET",
    "/api/coupons/{code}",
    roles=("manager", "integration"),
    summary="Show a coupon",
    response=CouponOut,
)
async def get_coupon(call: ApiCall) -> CouponOut:
    coupon = await coupons.find(call.path["code"])
    if coupon is None:
        raise not_found("coupon", call.path["code"])
    return out(coupon)


@routes.route(
    "POST",
    "/api/coupons/{code}/redeem",
    roles=("integration",),
    summary="Use a coupon on an order",
    body=UseBody,
    response=UseAnswer,
    errors=("409",),
)
async def redeem_coupon(call: ApiCall) -> UseAnswer:
    body: UseBody = call.body
    code = call.path["code"]
    try:
        async with audit_log.atomic():
            use = await coupons.use(code, body.order_id, call.now, call.actor.name)
            if use is not None and not use.duplicate:
                detail = {"order_id": body.order_id, "store": body.store, "amount": body.amount_fen}
                await audit_log.record(
                    call.actor.name, "coupon.use", f"coupon:{use.coupon.code}", detail, call.now
                )
    except coupons.CouponRefused as refused:
        status, error, message = _REFUSALS[refused.reason]
        raise ApiError(status, error, message.format(code=refused.coupon.code)) from None
    if use is None:
        raise not_found("coupon", code)
    return UseAnswer(
        coupon=out(use.coupon),
        order_id=body.order_id,
        duplicate=use.duplicate,
        discount_fen=discount_fen(use.coupon, body.amount_fen),
    )


@routes.route(
    "POST",
    "/api/coupons/{code}/void",
    roles=("manager",),
    summary="Void a coupon",
    response=CouponOut,
    errors=("409",),
)
async def void_coupon(call: ApiCall) -> CouponOut:
    code = call.path["code"]
    async with audit_log.atomic():
        coupon, changed = await coupons.void(code, call.now)
        if coupon is None:
            raise not_found("coupon", code)
        if changed:
            await audit_log.record(
                call.actor.name, "coupon.void", f"coupon:{coupon.code}", {}, call.now
            )
    if coupon.state != "voided":  # used or expired: too late to void
        status, error, _ = _REFUSALS[coupon.state]
        raise ApiError(status, error, f"coupon {coupon.code} is {coupon.state}, not voidable")
    return out(coupon)
