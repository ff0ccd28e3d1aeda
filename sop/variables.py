"""Template variables of a SOP touch: the member's, the grants', and one small builder
per audience name for what only that audience knows (a streak, expiring points, ...)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.config import Settings
from bot.config_sop import SopRule
from bot.services.calendar import next_evaluation
from sop.grants import Granted
from storage.models import GrowthEntry, Member, PointsLot, SignIn, Touchpoint
from storage.timeutil import utc


@dataclass(frozen=True, slots=True)
class TouchContext:
    """What a builder may read: the settings, the rule, the row, the member, the time."""

    settings: Settings
    rule: SopRule
    touch: Touchpoint
    member: Member
    now: datetime

    @property
    def today(self) -> Any:
        """The business-local date of ``now``."""
        return self.now.astimezone(self.settings.tz).date()


Builder = Callable[[TouchContext], Awaitable[dict[str, Any]]]


def common(ctx: TouchContext, granted: Granted) -> dict[str, Any]:
    """Every SOP template's variables: the member (after grants) and what was granted."""
    member, coupon = ctx.member, granted.coupon
    valid_to = coupon.valid_to.astimezone(ctx.settings.tz).date().isoformat() if coupon else ""
    return {
        "code": member.code,
        "member_name": member.name,
        "tier": ctx.settings.membership.tier(member.tier).name,
        "points": int(member.points_balance),
        "granted_points": granted.points,
        "coupon_name": coupon.name if coupon else "",
        "coupon_code": coupon.code if coupon else "",
        "coupon_valid_to": valid_to,
    }


async def _streak(ctx: TouchContext) -> dict[str, Any]:
    last = await SignIn.filter(member_id=ctx.member.id).order_by("-day").first()
    yesterday = ctx.today - timedelta(days=1)
    streak = int(last.streak) if last is not None and last.day >= yesterday else 0
    return {"streak": streak, "next_day": streak + 1}


async def _member_day(ctx: TouchContext) -> dict[str, Any]:
    return {"times": f"{ctx.settings.member_day.multiplier:g}"}


async def _inactive(ctx: TouchContext) -> dict[str, Any]:
    seen = ctx.member.last_active_at or ctx.member.created_at
    return {"days": max((ctx.now - seen).days, 0)}


async def _welcome(ctx: TouchContext) -> dict[str, Any]:
    labels = [step_label(d) for d in ctx.rule.trigger.delays]
    label = ctx.touch.occurrence.rpartition(":")[2]
    step = labels.index(label) + 1 if label in labels else 1
    return {"step": step, "steps": max(len(labels), 1)}


async def _expiring(ctx: TouchContext) -> dict[str, Any]:
    days = int(ctx.rule.audience.params.get("days", 30))
    rows = (
        await PointsLot.filter(
            member_id=ctx.member.id,
            closed_at=None,
            remaining__gt=0,
            expires_at__gt=utc(ctx.now),
            expires_at__lte=utc(ctx.now + timedelta(days=days)),
        )
        .order_by("expires_at")
        .values_list("remaining", "expires_at")
    )
    amount = sum(int(r) for r, _ in rows)
    first = rows[0][1] if rows else ctx.now + timedelta(days=days)
    # a lot expires at local midnight: its last usable day is the day before
    last_day = (first.astimezone(ctx.settings.tz) - timedelta(seconds=1)).date()
    return {"expiring": amount, "expires_on": last_day.isoformat()}


async def _tier_warning(ctx: TouchContext) -> dict[str, Any]:
    membership = ctx.settings.membership
    evaluation = next_evaluation(membership, ctx.today)
    since = datetime.combine(
        evaluation.replace(year=evaluation.year - 1), datetime.min.time(), ctx.settings.tz
    )
    rows = await GrowthEntry.filter(member_id=ctx.member.id, created_at__gte=utc(since)).values(
        "amount"
    )
    earned = sum(int(r["amount"]) for r in rows)
    current = membership.tier(ctx.member.tier)
    codes = [t.code for t in membership.tiers]
    index = codes.index(current.code) if current.code in codes else 0
    would_be = membership.tiers[index - 1] if index > 0 and earned < current.retention else current
    return {
        "would_be": would_be.name,
        "evaluation": evaluation.isoformat(),
        "earned": earned,
        "to_keep": max(current.retention - earned, 0),
    }


async def _nothing(ctx: TouchContext) -> dict[str, Any]:
    return {}


BUILDERS: dict[str, Builder] = {
    "signed_in_yesterday_not_today": _streak,
    "birthday_today": _nothing,
    "member_day_active": _member_day,
    "inactive": _inactive,
    "all": _welcome,
    "points_expiring": _expiring,
    "tier_warning": _tier_warning,
}


def step_label(delay: str) -> str:
    """A delay step's occurrence label: ``3d`` → ``d3``, ``12h`` → ``h12``."""
    text = delay.strip()
    return f"{text[-1]}{text[:-1].strip()}"


async def variables(ctx: TouchContext, granted: Granted) -> dict[str, Any]:
    """The template's variables for this touch."""
    build = BUILDERS.get(ctx.rule.audience.name, _nothing)
    return {**common(ctx, granted), **await build(ctx)}
