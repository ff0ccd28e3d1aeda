"""A deliberately slow reply for trying the late-reply path (``[dev] slow_keyword``)."""

from __future__ import annotations

import asyncio
from typing import Any

from wechatpy.messages import TextMessage

from bot.context import Ctx
from bot.replies import Reply, TextReply
from bot.routing import FilterResult, Router

router = Router("dev")


def _slow_keyword(event: Any, ctx: Ctx) -> FilterResult:
    keyword = ctx.services.settings.dev.slow_keyword
    return bool(keyword) and str(event.content or "").strip() == keyword


@router.on(TextMessage, _slow_keyword)
async def slow_reply(event: Any, ctx: Ctx) -> Reply:
    """Sleep past the reply budget, then answer (arrives as a late reply)."""
    seconds = ctx.services.settings.dev.slow_seconds
    await asyncio.sleep(seconds)
    return TextReply(f"慢回复：处理用了 {seconds:g} 秒，这条消息通过客服消息送达。")
