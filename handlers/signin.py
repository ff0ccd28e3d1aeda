"""签到 / 打卡: the daily sign-in, by keyword or by the menu button."""

from __future__ import annotations

from typing import Any

from wechatpy.events import ClickEvent
from wechatpy.messages import TextMessage

from bot.context import Ctx
from bot.filters import Command, CommandKey
from bot.replies import Reply
from bot.routing import Router
from bot.services.signin import SignInResult

router = Router("signin")


@router.on(TextMessage, Command("signin"))
async def sign_in_text(event: Any, ctx: Ctx) -> Reply:
    """签到 / 打卡 (or the configured synonyms)."""
    return await _sign_in(ctx)


@router.on(ClickEvent, CommandKey("signin"))
async def sign_in_menu(event: Any, ctx: Ctx) -> Reply:
    """The 签到 menu button."""
    return await _sign_in(ctx)


async def _sign_in(ctx: Ctx) -> Reply:
    assert ctx.member is not None  # the member middleware resolves every OA sender
    result = await ctx.services.signin.sign_in(ctx.member.id, ctx.now)
    ctx.trace.outcome = "signin" if result.signed else "signin_again"  # ≤ 16 chars
    template = "signin_done" if result.signed else "signin_already"
    return ctx.render(template, **_variables(ctx, result))


def _variables(ctx: Ctx, result: SignInResult) -> dict[str, Any]:
    tier = ctx.services.settings.membership.tier(result.tier)
    return {
        "points": result.points,
        "streak": result.streak,
        "balance": result.balance,
        "tomorrow_points": result.tomorrow_points,
        "member_day": result.member_day,
        "day_times": times(result.day_multiplier),
        "tier_name": tier.name,
        "tier_bonus": result.tier_bonus,
        "tier_times": times(result.tier_multiplier),
        "tomorrow_member_day": result.tomorrow_member_day,
        "tomorrow_times": times(result.tomorrow_day_multiplier),
    }


def times(per_mille: int) -> str:
    """A per-mille multiplier for people: 2000 → "2", 1500 → "1.5", 1250 → "1.25"."""
    whole, rest = divmod(per_mille, 1000)
    return f"{whole}.{rest:03d}".rstrip("0").rstrip(".") if rest else str(whole)
