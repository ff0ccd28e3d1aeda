"""退订 / TD opts out of marketing, 订阅 opts back in; both answer with the current state."""

from __future__ import annotations

from typing import Any

from wechatpy.messages import TextMessage

from bot.context import Ctx
from bot.filters import Command
from bot.replies import Reply
from bot.routing import Router
from bot.services import consent

router = Router("consent")


@router.on(TextMessage, Command("opt_out"))
async def opt_out(event: Any, ctx: Ctx) -> Reply:
    """Withdraw marketing consent (a Consent row; the member's opt-out flag)."""
    assert ctx.member is not None  # the member middleware resolves every OA sender
    version = ctx.services.settings.privacy.marketing_text_version
    state = await consent.opt_out(ctx.member.id, consent.CHAT, version, now=ctx.now)
    return ctx.render("consent", opted_out=state.opted_out, changed=state.changed)


@router.on(TextMessage, Command("opt_in"))
async def opt_in(event: Any, ctx: Ctx) -> Reply:
    """Grant marketing consent again."""
    assert ctx.member is not None
    version = ctx.services.settings.privacy.marketing_text_version
    state = await consent.opt_in(ctx.member.id, consent.CHAT, version, now=ctx.now)
    return ctx.render("consent", opted_out=state.opted_out, changed=state.changed)
