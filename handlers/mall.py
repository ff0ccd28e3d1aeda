"""积分商城 / 兑换 <code> / 我的券: the points mall in chat."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from wechatpy.events import ClickEvent
from wechatpy.messages import TextMessage

from bot.context import Ctx
from bot.filters import Command, CommandKey
from bot.replies import Reply
from bot.routing import Router
from bot.services.mall import Redeemed

router = Router("mall")


@router.on(TextMessage, Command("mall"))
async def mall_text(event: Any, ctx: Ctx) -> Reply:
    """积分商城: the rewards on offer and the member's balance."""
    return await _catalogue(ctx)


@router.on(ClickEvent, CommandKey("mall"))
async def mall_menu(event: Any, ctx: Ctx) -> Reply:
    """The 积分商城 menu button."""
    return await _catalogue(ctx)


@router.on(TextMessage, Command("redeem", takes_argument=True))
async def redeem_text(event: Any, ctx: Ctx) -> Reply:
    """兑换 <code>: redeem a reward (the code case-insensitive); bare 兑换 explains."""
    assert ctx.member is not None  # the member middleware resolves every OA sender
    code = str(ctx.match.get("argument", "")).strip()
    word = _first(ctx, "redeem")
    if not code:
        return _refused(ctx, Redeemed(refused="usage"), "", word)
    result = await ctx.services.mall.redeem(ctx.member.id, code, f"redeem:{ctx.event_key}", ctx.now)
    if result.issued is None:
        ctx.trace.outcome = "redeem_refused"
        return _refused(ctx, result, code.upper(), word)
    ctx.trace.outcome = "redeemed"
    issued, tz = result.issued, ctx.services.settings.tz
    return ctx.render(
        "redeem_done",
        reward=issued.reward_name,
        coupon=issued.coupon_code,
        value=value_text(issued.value_fen, issued.discount),
        valid_until=last_day(issued.valid_to, tz),
        points=issued.points,
        balance=result.balance,
        coupons_word=_first(ctx, "coupons"),
    )


@router.on(TextMessage, Command("coupons"))
async def coupons_text(event: Any, ctx: Ctx) -> Reply:
    """我的券: the member's unused, still valid coupons."""
    return await _coupons(ctx)


@router.on(ClickEvent, CommandKey("coupons"))
async def coupons_menu(event: Any, ctx: Ctx) -> Reply:
    """The 我的券 menu button."""
    return await _coupons(ctx)


async def _catalogue(ctx: Ctx) -> Reply:
    assert ctx.member is not None
    found = await ctx.services.mall.catalogue(ctx.member.id, ctx.now)
    rewards = [
        {
            "code": r.code,
            "name": r.name,
            "cost": r.cost_points,
            "stock": r.stock,
            "limit": r.per_member_limit,
            "value": value_text(r.coupon_value_fen, r.coupon_discount),
        }
        for r in found.rewards
    ]
    return ctx.render("mall", rewards=rewards, balance=found.balance, word=_first(ctx, "redeem"))


async def _coupons(ctx: Ctx) -> Reply:
    assert ctx.member is not None
    tz = ctx.services.settings.tz
    found = await ctx.services.mall.coupons(ctx.member.id, ctx.now)
    coupons = [
        {
            "code": c.code,
            "name": c.name,
            "value": value_text(int(c.value_fen), int(c.discount)),
            "valid_until": last_day(c.valid_to, tz),
        }
        for c in found
    ]
    return ctx.render("coupons", coupons=coupons, mall_word=_first(ctx, "mall"))


def _refused(ctx: Ctx, result: Redeemed, code: str, word: str) -> Reply:
    return ctx.render(
        "redeem_refused",
        reason=result.refused,
        code=code,
        balance=result.balance,
        cost=result.cost,
        limit=result.limit,
        word=word,
        mall=_first(ctx, "mall"),
    )


def _first(ctx: Ctx, command: str) -> str:
    words = ctx.services.settings.chat.words(command)
    return words[0] if words else command


def value_text(value_fen: int, discount: int) -> str:
    """A coupon's worth for people: 1000 fen → "10元", 1250 → "12.50元", 850‰ → "8.5折"."""
    if discount:
        tenths, rest = divmod(discount, 100)
        return f"{tenths}.{rest:02d}".rstrip("0").rstrip(".") + "折"
    yuan, fen = divmod(value_fen, 100)
    return f"{yuan}元" if not fen else f"{yuan}.{fen:02d}元"


def last_day(valid_to: datetime, tz: ZoneInfo) -> str:
    """The last business-local day a coupon is valid (``valid_to`` itself is excluded)."""
    return (valid_to.astimezone(tz) - timedelta(microseconds=1)).date().isoformat()
