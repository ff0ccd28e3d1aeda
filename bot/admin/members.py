"""``GET /api/members`` (search) and ``GET /api/members/{code}`` (the whole profile).

Search is exact: a member code (public or legacy), a mobile number (through its keyed
HMAC, never a scan), an openid, unionid or WeCom external userid. Mobile numbers are
only ever answered masked (138****8000); the lookup hash is never shown.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bot.admin.api import ApiCall, ApiError, ApiRoutes, not_found
from bot.services import member_profile, mobile
from bot.services.pii import MissingKey, MobileVault
from storage.models import Identity, Member
from storage.models.members import LEGACY_CODE, OA_OPENID, UNIONID, WECOM_EXTERNAL_USERID

routes = ApiRoutes(tag="members")

SEARCH_KINDS = (OA_OPENID, UNIONID, WECOM_EXTERNAL_USERID, LEGACY_CODE)


class MemberQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    q: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="member code, legacy code, mobile, openid, unionid or external userid",
    )
    tier: str | None = Field(default=None, max_length=16)
    before_id: int | None = Field(default=None, ge=1, description="page: ids below this one")
    limit: int = Field(default=20, ge=1, le=100)


class MemberSummary(BaseModel):
    id: int
    code: str
    status: str
    tier: str
    growth: int
    points_balance: int
    points_debt: int
    mobile: str = Field(description="masked (138****8000), empty when none")
    channel: str
    created_at: datetime
    last_active_at: datetime | None


class MemberPage(BaseModel):
    items: list[MemberSummary]
    matched_by: list[str] = Field(description="what q matched: code, mobile, oa_openid…")
    next_before_id: int | None = Field(description="pass as before_id for the next page")


class IdentityOut(BaseModel):
    kind: str
    app: str
    value: str = Field(description="for mobile_hash: the number masked")
    followed: bool
    followed_at: datetime | None
    unfollowed_at: datetime | None
    created_at: datetime


class EntryOut(BaseModel):
    id: int
    kind: str
    amount: int
    reason: str
    source: str
    ref: str
    created_at: datetime


class LotOut(BaseModel):
    id: int
    amount: int
    remaining: int
    expires_at: datetime


class OrderOut(BaseModel):
    external_id: str
    amount_fen: int
    refunded_fen: int
    points: int
    points_reversed: int
    growth: int
    growth_reversed: int
    channel: str
    store: str
    paid_at: datetime


class OrderTotals(BaseModel):
    orders: int
    paid_fen: int
    refunded_fen: int


class RefundOut(BaseModel):
    order_external_id: str
    refund_id: str
    amount_fen: int
    points_reversed: int
    growth_reversed: int
    created_at: datetime


class RedemptionOut(BaseModel):
    id: int
    reward_code: str
    reward_name: str
    points: int
    channel: str
    created_at: datetime


class CouponOut(BaseModel):
    code: str
    name: str
    state: str
    value_fen: int
    discount: int = Field(description="per mille of the price (850 = 15 % off), 0 for value")
    valid_from: datetime
    valid_to: datetime
    used_at: datetime | None
    used_order_id: str | None


class TagOut(BaseModel):
    group: str
    name: str
    source: str
    set_by: str
    created_at: datetime


class ConsentOut(BaseModel):
    purpose: str
    granted: bool
    channel: str
    text_version: str
    at: datetime


class MemberProfile(MemberSummary):
    merged_into_id: int | None
    referred_by_id: int | None
    birthday: date | None
    identities: list[IdentityOut]
    ledger: list[EntryOut] = Field(description=f"latest {member_profile.LEDGER_LINES} entries")
    open_lots: list[LotOut]
    order_totals: OrderTotals
    orders: list[OrderOut] = Field(description=f"latest {member_profile.STORY_LINES}")
    refunds: list[RefundOut]
    redemptions: list[RedemptionOut]
    coupons: list[CouponOut]
    tags: list[TagOut]
    consents: list[ConsentOut]


def _vault(call: ApiCall) -> MobileVault:
    return MobileVault.from_settings(call.services.settings.security)


def _summary(member: Member, vault: MobileVault) -> dict[str, Any]:
    return {
        "id": member.id,
        "code": member.code,
        "status": member.status,
        "tier": member.tier,
        "growth": member.growth,
        "points_balance": member.points_balance,
        "points_debt": member.points_debt,
        "mobile": member_profile.masked_mobile(member, vault),
        "channel": member.channel,
        "created_at": member.created_at,
        "last_active_at": member.last_active_at,
    }


@routes.route(
    "GET",
    "/api/members",
    roles=("manager", "staff"),
    summary="Search members",
    query=MemberQuery,
    response=MemberPage,
    errors=("409",),
)
async def search_members(call: ApiCall) -> MemberPage:
    query: MemberQuery = call.query
    vault = _vault(call)
    rows = Member.all()
    matched: list[str] = []
    if query.q is not None:
        ids, matched = await _matches(query.q.strip(), vault)
        rows = rows.filter(id__in=ids)
    if query.tier is not None:
        rows = rows.filter(tier=query.tier)
    if query.before_id is not None:
        rows = rows.filter(id__lt=query.before_id)
    found = await rows.order_by("-id").limit(query.limit + 1)
    items = [MemberSummary(**_summary(m, vault)) for m in found[: query.limit]]
    more = len(found) > query.limit
    return MemberPage(
        items=items, matched_by=matched, next_before_id=items[-1].id if more and items else None
    )


async def _matches(q: str, vault: MobileVault) -> tuple[list[int], list[str]]:
    """Member ids an exact search value matches, and what it matched as."""
    ids: dict[int, None] = {}
    matched: list[str] = []
    if member_profile.is_mobile(q):
        try:
            holder = await mobile.find_member(vault, q)
        except MissingKey as exc:
            message = f"{exc.key} is not configured; mobile search needs it"
            raise ApiError(409, "mobile_search_unavailable", message) from None
        if holder is not None:
            ids[holder.id] = None
            matched.append("mobile")
    by_code = await member_profile.by_code(q)
    if by_code is not None:
        ids[by_code.id] = None
        matched.append("code")
    held = await Identity.filter(kind__in=SEARCH_KINDS, value=q).values_list("kind", "member_id")
    for kind, member_id in held:
        ids[int(member_id)] = None
        if kind not in matched:
            matched.append(str(kind))
    return list(ids), matched


@routes.route(
    "GET",
    "/api/members/{code}",
    roles=("manager", "staff"),
    summary="Show a member's profile",
    response=MemberProfile,
    errors=("404",),
)
async def show_member(call: ApiCall) -> MemberProfile:
    code = call.path["code"]
    member = await member_profile.by_code(code)
    if member is None:
        raise not_found("member", code)
    vault = _vault(call)
    profile = await member_profile.load(member, vault)
    return MemberProfile(
        **_summary(member, vault),
        merged_into_id=member.merged_into_id,
        referred_by_id=member.referred_by_id,
        birthday=member.birthday,
        identities=[_identity(i, profile.mobile) for i in profile.identities],
        ledger=[EntryOut(**e) for e in profile.entries],
        open_lots=[LotOut(**lot) for lot in profile.lots],
        order_totals=OrderTotals(**profile.order_totals),
        orders=[OrderOut(**o) for o in profile.orders],
        refunds=[_refund(r) for r in profile.refunds],
        redemptions=[_redemption(r) for r in profile.redemptions],
        coupons=[_coupon(c) for c in profile.coupons],
        tags=[_tag(t) for t in profile.tags],
        consents=[ConsentOut(**c) for c in profile.consents],
    )


def _identity(row: dict[str, Any], masked: str) -> IdentityOut:
    value = row["value"]
    if row["kind"] == "mobile_hash":  # a keyed hash: never shown, the number masked instead
        value = masked or "(mobile)"
    return IdentityOut(**{**row, "value": value})


def _refund(row: dict[str, Any]) -> RefundOut:
    return RefundOut(
        order_external_id=row["order__external_id"],
        refund_id=row["refund_id"],
        amount_fen=row["amount_fen"],
        points_reversed=row["points_reversed"],
        growth_reversed=row["growth_reversed"],
        created_at=row["created_at"],
    )


def _redemption(row: dict[str, Any]) -> RedemptionOut:
    return RedemptionOut(
        id=row["id"],
        reward_code=row["reward__code"],
        reward_name=row["reward__name"],
        points=row["points"],
        channel=row["channel"],
        created_at=row["created_at"],
    )


def _coupon(row: dict[str, Any]) -> CouponOut:
    return CouponOut(**{k: v for k, v in row.items() if k != "redemption_id"})


def _tag(row: dict[str, Any]) -> TagOut:
    return TagOut(
        group=row["tag__group__name"],
        name=row["tag__name"],
        source=row["source"],
        set_by=row["set_by"],
        created_at=row["created_at"],
    )
