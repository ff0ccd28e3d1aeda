"""The last router: unknown text gets a short hint; everything else no reply."""

from __future__ import annotations

from typing import Any

from wechatpy.messages import TextMessage

from bot.context import Ctx
from bot.replies import Reply
from bot.routing import Router
from bot.wechat.wecom_events import AgentText

router = Router("fallback")


@router.on((TextMessage, AgentText))
async def unknown_text(event: Any, ctx: Ctx) -> Reply:
    """Point the member at 帮助."""
    ctx.trace.outcome = "fallback"
    return ctx.render("fallback", text=str(event.content or "")[:20])
