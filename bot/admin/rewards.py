"""``/api/rewards``: the points mall's rewards — list, create, update (audited).

Rewards created here have source ``api``: the ``[[rewards]]`` upsert at start-up never
touches them. A configured reward (source ``config``) may be patched too, but the next
start sets its configured fields again (not its stock). Codes are stored upper-case.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from tortoise.exceptions import IntegrityError

from bot.admin.api import ApiCall, ApiError, ApiRoutes, not_found
from storage.models import Reward
from storage.repos import audit_log
from storage.repos.mall import normal_code
from storage.timeutil import utc

routes = ApiRoutes(tag="rewards")

CODE_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"


class _Fields(BaseModel):
    """What create and update share; all optional here, create requires its own."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=64)
    description: str | None = Field(default=None, max_length=256)
    cost_points: int | None = Field(default=None, ge=1, le=10**12)
    stock: int | None = Field(default=None, ge=0, le=10**12, description="null: unlimited")
    per_member_limit: int | None = Field(default=None, ge=0, le=10**6, description="0: none")
    coupon_value_fen: int | None = Field(default=None, ge=0, le=10**10)
    coupon_discount: int | None = Field(
        default=None, ge=0, le=999, description="per mille of the price paid: 850 is 15% off"
    )
    coupon_valid_days: int | None = Field(default=None, ge=1, le=3660)
    available_from: AwareDatetime | None = None
    available_to: AwareDatetime | None = None
    active: bool | None = None
    sort_order: int | None = Field(default=None, ge=-(10**6), le=10**6)


class RewardCreate(_Fields):
    code: str = Field(pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=64)
    cost_points: int = Field(ge=1, le=10**12)

    @model_validator(mode="after")
    def _consistent(self) -> RewardCreate:
        _check(self.model_dump())
        return self


class RewardUpdate(_Fields):
    """Only the fields sent change; ``stock: null`` makes the stock unlimited."""


class RewardOut(BaseModel):
    code: str
    name: str
    description: str
    cost_points: int
    stock: int | None
    per_member_limit: int
    coupon_value_fen: int
    coupon_discount: int
    coupon_valid_days: int
    available_from: datetime | None
    available_to: datetime | None
    active: bool
    sort_order: int
    source: str
    created_at: datetime
    updated_at: datetime


class RewardList(BaseModel):
    items: list[RewardOut]


class RewardQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    active: bool | None = None


_NOT_NULL = ("name", "description", "cost_points", "per_member_limit", "coupon_valid_days")
_DEFAULTS: dict[str, Any] = {
    "description": "",
    "per_member_limit": 0,
    "coupon_value_fen": 0,
    "coupon_discount": 0,
    "coupon_valid_days": 30,
    "active": True,
    "sort_order": 0,
}


def _check(merged: dict[str, Any]) -> None:
    """The rules across fields; ValueError (a 422) when broken."""
    if bool(merged.get("coupon_value_fen")) == bool(merged.get("coupon_discount")):
        raise ValueError("set exactly one of coupon_value_fen and coupon_discount")
    start, end = merged.get("available_from"), merged.get("available_to")
    if start is not None and end is not None and end <= start:
        raise ValueError("available_to must be after available_from")


def out(r: Reward) -> RewardOut:
    """The API view of a reward."""
    return RewardOut(
        code=r.code,
        name=r.name,
        description=r.description,
        cost_points=r.cost_points,
        stock=r.stock,
        per_member_limit=r.per_member_limit,
        coupon_value_fen=r.coupon_value_fen,
        coupon_discount=r.coupon_discount,
        coupon_valid_days=r.coupon_valid_days,
        available_from=r.available_from,
        available_to=r.available_to,
        active=r.active,
        sort_order=r.sort_order,
        source=r.source,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


@routes.route(
    "GET",
    "/api/rewards",
    roles=("manager", "staff"),
    summary="List rewards",
    query=RewardQuery,
    response=RewardList,
)
async def list_rewards(call: ApiCall) -> RewardList:
    query: RewardQuery = call.query
    rows = Reward.all()
    if query.active is not None:
        rows = rows.filter(active=query.active)
    return RewardList(items=[out(r) for r in await rows.order_by("sort_order", "code")])


@routes.route(
    "POST",
    "/api/rewards",
    roles=("manager",),
    summary="Create a reward",
    body=RewardCreate,
    response=RewardOut,
    status=201,
    errors=("409",),
)
async def create_reward(call: ApiCall) -> RewardOut:
    body: RewardCreate = call.body
    values = {**_DEFAULTS, **body.model_dump(exclude_none=True)}
    values["code"] = normal_code(body.code)
    values["stock"] = body.stock
    try:
        async with audit_log.atomic():
            reward = await Reward.create(
                **values, source="api", created_at=call.now, updated_at=call.now
            )
            await audit_log.record(
                call.actor.name, "reward.create", f"reward:{reward.code}", _detail(values), call.now
            )
    except IntegrityError:
        raise ApiError(409, "reward_exists", f"reward {values['code']} exists") from None
    return out(reward)


@routes.route(
    "PATCH",
    "/api/rewards/{code}",
    roles=("manager",),
    summary="Update a reward",
    body=RewardUpdate,
    response=RewardOut,
)
async def update_reward(call: ApiCall) -> RewardOut:
    body: RewardUpdate = call.body
    code = normal_code(call.path["code"])
    sent = body.model_dump(include=body.model_fields_set)
    for name in _NOT_NULL:
        if name in sent and sent[name] is None:
            raise _invalid(name, "may not be null")
    async with audit_log.atomic():
        reward = await Reward.get_or_none(code=code)
        if reward is None:
            raise not_found("reward", code)
        merged = {name: getattr(reward, name) for name in _Fields.model_fields} | sent
        try:
            _check(merged)
        except ValueError as error:
            raise _invalid("body", str(error)) from None
        values = {k: utc(v) if isinstance(v, datetime) else v for k, v in sent.items()}
        if values:  # an empty PATCH changes nothing and records nothing
            await Reward.filter(id=reward.id).update(**values, updated_at=utc(call.now))
            await audit_log.record(
                call.actor.name, "reward.update", f"reward:{code}", _detail(sent), call.now
            )
        fresh = await Reward.get(id=reward.id)
    return out(fresh)


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(
        422,
        "invalid_request",
        f"{field}: {message}",
        [{"field": field, "in": "body", "message": message}],
    )


def _detail(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}
