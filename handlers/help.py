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

# Commands whose first configured keyword the help text shows.
_WORDS = ("mall", "redeem", "coupons", "bind_phone", "opt_out", "opt_in", "erase")


@router.on((TextMessage, AgentText), Command("help"))
async def help_text(event: Any, ctx: Ctx) -> Reply:
    """Answer 帮助 with the list of commands."""
    return _help(ctx)


@router.on((ClickEvent, AgentClick), CommandKey("help"))
async def help_menu(event: Any, ctx: Ctx) -> Reply:
    """The 帮助 menu button."""
    return _help(ctx)


def _help(ctx: Ctx) -> Reply:
    chat = ctx.services.settings.chat
    words = {name: next(iter(chat.words(name)), name) for name in _WORDS}
    return ctx.render("help", platform=ctx.inbound.platform, **words)
