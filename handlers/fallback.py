"""The last router: configured auto-replies, else a short hint; everything else no reply."""

from __future__ import annotations

from typing import Any

from wechatpy.messages import TextMessage

from bot.context import Ctx
from bot.replies import Reply, TextReply
from bot.routing import Router
from bot.services import autoreply
from bot.wechat.wecom_events import AgentText

router = Router("fallback")


@router.on((TextMessage, AgentText))
async def unknown_text(event: Any, ctx: Ctx) -> Reply:
    """Answer a configured auto-reply (members only), else point at 帮助."""
    text = str(event.content or "")
    rule = autoreply.find(ctx.services.settings.chat.auto_replies, text)
    if rule is not None and ctx.inbound.platform == "oa":
        ctx.trace.outcome = "auto_reply"
        return TextReply(rule.reply)
    ctx.trace.outcome = "fallback"
    return ctx.render("fallback", text=text[:20])
