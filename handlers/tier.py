"""会员 / 等级: the member's tier, growth, what is left to the next tier, benefits."""

from __future__ import annotations

from typing import Any

from wechatpy.events import ClickEvent
from wechatpy.messages import TextMessage

from bot.context import Ctx
from bot.filters import Command, CommandKey
from bot.replies import Reply
from bot.routing import Router

router = Router("tier")


@router.on(TextMessage, Command("tier"))
async def tier_text(event: Any, ctx: Ctx) -> Reply:
    """Answer 会员 / 等级 with the member's standing."""
    return await _standing(ctx)


@router.on(ClickEvent, CommandKey("tier"))
async def tier_menu(event: Any, ctx: Ctx) -> Reply:
    """The 会员 menu button."""
    return await _standing(ctx)


async def _standing(ctx: Ctx) -> Reply:
    member = await ctx.services.members.get(ctx.member.id) if ctx.member else None
    if member is None:
        return ctx.render("error")
    today = ctx.now.astimezone(ctx.services.settings.tz).date()
    return ctx.render("tier", **ctx.services.tiers.standing(member.growth, member.tier, today))
