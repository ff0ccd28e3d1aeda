"""Orders from integrations (POS, e-commerce): record, read, refund.

``POST /api/orders`` answers 201 for a new order and 200 (``duplicate: true``) for a repeat
of the same content; the same external id with other content is 409 ``order_conflict``.
The buyer is named by exactly one of ``openid`` (with ``account``), ``unionid``,
``mobile`` or ``member_code``; an unknown mobile number becomes a new member.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from bot.admin.api import ApiCall, ApiError, ApiRoutes
from bot.services import orders
from bot.services.orders import MemberLookup, NewOrder, OrderView
from bot.services.pii import InvalidMobile, MissingKey

routes = ApiRoutes(tag="orders")

_REFS = ("openid", "unionid", "mobile", "member_code")


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_id: str = Field(min_length=1, max_length=128, description="the caller's order id")
    openid: str | None = Field(default=None, min_length=1, max_length=128)
    account: str | None = Field(
        default=None, max_length=64, description="Official Account of the openid (default: first)"
    )
    unionid: str | None = Field(default=None, min_length=1, max_length=128)
    mobile: str | None = Field(default=None, min_length=1, max_length=32)
    member_code: str | None = Field(default=None, min_length=1, max_length=16)
    amount_fen: int = Field(gt=0, le=10**12, description="amount paid, in fen")
    channel: str = Field(default="", max_length=32)
    store: str = Field(default="", max_length=64)
    paid_at: AwareDatetime = Field(description="ISO-8601 with a UTC offset")

    @model_validator(mode="after")
    def _one_member(self) -> OrderIn:
        given = [name for name in _REFS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"name the member with exactly one of {', '.join(_REFS)}")
        if self.account is not None and given != ["openid"]:
            raise ValueError("account goes with openid only")
        return self

    def lookup(self) -> MemberLookup:
        for name in _REFS:
            value = getattr(self, name)
            if value is not None:
                return MemberLookup(name, value, self.account or "")  # type: ignore[arg-type]
        raise AssertionError("validated: one member reference")


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refund_id: str = Field(min_length=1, max_length=128, description="the caller's refund id")
    amount_fen: int = Field(gt=0, le=10**12, description="this refund's amount, in fen")


class RefundOut(BaseModel):
    refund_id: str
    amount_fen: int
    points_reversed: int
    growth_reversed: int
    created_at: datetime


class OrderOut(BaseModel):
    external_id: str
    member_code: str
    amount_fen: int
    refunded_fen: int
    channel: str
    store: str
    paid_at: datetime
    points: int = Field(description="points the order earned")
    points_reversed: int = Field(description="points its refunds took back")
    growth: int
    growth_reversed: int
    base: int = Field(description="points before multipliers")
    tier_multiplier: int = Field(description="per mille")
    day_multiplier: int = Field(description="per mille (member day)")
    balance: int = Field(description="the member's points balance now")
    debt: int = Field(description="the member's points debt now")
    source: str
    created_at: datetime
    refunds: list[RefundOut]
    duplicate: bool = False


class RefundAnswer(OrderOut):
    refund: RefundOut
    restored_coupons: list[str] = Field(description="coupons a full refund gave back")


def _order_out(view: OrderView) -> OrderOut:
    data = asdict(view)
    data.pop("refund")
    data.pop("restored_coupons")
    return OrderOut.model_validate(data)


def _api_error(error: Exception) -> ApiError:
    if isinstance(error, orders.UnknownMember):
        return ApiError(404, "member_not_found", str(error))
    if isinstance(error, orders.UnknownAccount):
        return ApiError(422, "unknown_account", str(error))
    if isinstance(error, orders.OrderNotFound):
        return ApiError(404, "order_not_found", f"order {error} not found")
    if isinstance(error, orders.OrderConflict):
        return ApiError(409, "order_conflict", str(error))
    if isinstance(error, orders.RefundConflict):
        return ApiError(409, "refund_conflict", str(error))
    if isinstance(error, orders.RefundExceedsOrder):
        return ApiError(409, "refund_exceeds_order", str(error))
    if isinstance(error, InvalidMobile):
        return ApiError(422, "invalid_mobile", "not a mainland China mobile number")
    if isinstance(error, MissingKey):
        return ApiError(503, "mobile_keys_missing", f"{error.key} is not configured")
    raise error


_ERRORS = (orders.OrderError, InvalidMobile, MissingKey)


@routes.route(
    "POST",
    "/api/orders",
    roles=("integration",),
    summary="Record an order",
    body=OrderIn,
    response=OrderOut,
    status=201,
    errors=("404", "409"),
)
async def create_order(call: ApiCall) -> web.Response | OrderOut:
    body: OrderIn = call.body
    order = NewOrder(
        external_id=body.external_id,
        member=body.lookup(),
        amount_fen=body.amount_fen,
        paid_at=body.paid_at,
        channel=body.channel,
        store=body.store,
    )
    try:
        view = await call.services.orders.create(order, call.actor.name)
    except _ERRORS as error:
        raise _api_error(error) from None
    answer = _order_out(view)
    if view.duplicate:
        return web.json_response(answer.model_dump(mode="json"), status=200)
    return answer


@routes.route(
    "GET",
    "/api/orders/{external_id}",
    roles=("integration", "manager"),
    summary="Show an order",
    response=OrderOut,
    errors=("404",),
)
async def get_order(call: ApiCall) -> OrderOut:
    try:
        view = await call.services.orders.view(call.path["external_id"])
    except _ERRORS as error:
        raise _api_error(error) from None
    return _order_out(view)


@routes.route(
    "POST",
    "/api/orders/{external_id}/refund",
    roles=("integration",),
    summary="Refund an order",
    body=RefundIn,
    response=RefundAnswer,
    errors=("404", "409"),
)
async def refund_order(call: ApiCall) -> RefundAnswer:
    body: RefundIn = call.body
    try:
        view = await call.services.orders.refund(
            call.path["external_id"], body.refund_id, body.amount_fen, call.actor.name
        )
    except _ERRORS as error:
        raise _api_error(error) from None
    data = asdict(view)
    return RefundAnswer.model_validate(data)
