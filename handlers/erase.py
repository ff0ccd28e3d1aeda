"""注销 asks for confirmation; 确认注销 within the window erases the member's personal data."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from wechatpy.messages import TextMessage

from bot.context import Ctx
from bot.filters import Command
from bot.replies import Reply
from bot.routing import Router
from bot.services import consent, erasure
from bot.services.pii import MobileVault

router = Router("erase")


def _word(ctx: Ctx, command: str) -> str:
    return next(iter(ctx.services.settings.chat.words(command)), command)


@router.on(TextMessage, Command("erase"))
async def erase_request(event: Any, ctx: Ctx) -> Reply:
    """Record the request and explain what confirming does."""
    assert ctx.member is not None  # the member middleware resolves every OA sender
    await erasure.request(ctx.member.id, channel=consent.CHAT, now=ctx.now)
    minutes = ctx.services.settings.privacy.erase_confirm_minutes
    return ctx.render("erase_ask", minutes=minutes, confirm=_word(ctx, "erase_confirm"))


@router.on(TextMessage, Command("erase_confirm"))
async def erase_confirm(event: Any, ctx: Ctx) -> Reply:
    """Erase when a request is pending; otherwise say how to ask (nothing changes)."""
    assert ctx.member is not None
    services = ctx.services
    minutes = services.settings.privacy.erase_confirm_minutes
    result = await erasure.confirm(
        ctx.member.id,
        window=timedelta(minutes=minutes),
        vault=MobileVault.from_settings(services.settings.security),
        cache=services.cache,
        keys=services.keys,
        now=ctx.now,
    )
    if result.erased:
        ctx.trace.outcome = "erased"
    return ctx.render(
        "erase_done", erased=result.erased, minutes=minutes, erase=_word(ctx, "erase")
    )
