"""帮助: what the member (or staff member) can say."""

from __future__ import annotations

from typing import Any

from wechatpy.events import ClickEvent
from wechatpy.messages import TextMessage

from bot.context import Ctx
from bot.filters import Command, CommandKey
from bot.replies import Reply
from bot.routing import Router
from bot.wechat.wecom_events import AgentClick, AgentText

router = Router("help")


@router.on((TextMessage, AgentText), Command("help"))
async def help_text(event: Any, ctx: Ctx) -> Reply:
    """Answer 帮助 with the list of commands."""
    return ctx.render("help", platform=ctx.inbound.platform)


@router.on((ClickEvent, AgentClick), CommandKey("help"))
async def help_menu(event: Any, ctx: Ctx) -> Reply:
    """The 帮助 menu button."""
    return ctx.render("help", platform=ctx.inbound.platform)
