"""积分: balance, debt, points expiring soon, the latest entries."""

from __future__ import annotations

from typing import Any

from wechatpy.events import ClickEvent
from wechatpy.messages import TextMessage

from bot.context import Ctx
from bot.filters import Command, CommandKey
from bot.replies import Reply
from bot.routing import Router
from bot.services import points_view

router = Router("points")


@router.on(TextMessage, Command("points"))
async def points_text(event: Any, ctx: Ctx) -> Reply:
    """Answer 积分 / 我的积分."""
    return await _points(ctx)


@router.on(ClickEvent, CommandKey("points"))
async def points_menu(event: Any, ctx: Ctx) -> Reply:
    """The 积分 menu button."""
    return await _points(ctx)


async def _points(ctx: Ctx) -> Reply:
    assert ctx.member is not None  # the member middleware resolves every OA sender
    settings = ctx.services.settings
    result = await points_view.summary(
        ctx.member.id, ctx.now, settings.tz, settings.points.expiry_reminder_days
    )
    return ctx.render("points", summary=result)
