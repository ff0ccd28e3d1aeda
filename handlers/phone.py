"""绑定手机 <number> / 验证 <code>: bind a mobile number with a one-time SMS code."""

from __future__ import annotations

from typing import Any

from wechatpy.messages import TextMessage

from bot.context import Ctx
from bot.filters import Command
from bot.replies import Reply
from bot.routing import Router

router = Router("phone")

EXAMPLE_MOBILE = "13800138000"
EXAMPLE_CODE = "123456"


@router.on(TextMessage, Command("bind_phone", takes_argument=True))
async def bind_phone(event: Any, ctx: Ctx) -> Reply:
    """Send a code to the number; bare 绑定手机 explains."""
    assert ctx.member is not None  # the member middleware resolves every OA sender
    argument = str(ctx.match.get("argument", "")).strip()
    if not argument:
        return _bind_reply(ctx, "usage", "", 0)
    result = await ctx.services.phone.request(ctx.member, argument, ctx.now)
    ctx.trace.outcome = f"phone_{result.state}"[:16]
    return _bind_reply(ctx, result.state, result.mobile, result.minutes)


@router.on(TextMessage, Command("verify", takes_argument=True))
async def verify(event: Any, ctx: Ctx) -> Reply:
    """Check the code; bare 验证 explains."""
    assert ctx.member is not None
    argument = str(ctx.match.get("argument", "")).strip()
    result = await ctx.services.phone.verify(ctx.member, argument, ctx.now, ctx.services)
    ctx.trace.outcome = f"verify_{result.state}"[:16]
    return ctx.render(
        "phone_verify",
        state=result.state,
        mobile=result.mobile,
        tries_left=result.tries_left,
        bind=_first(ctx, "bind_phone"),
        word=_first(ctx, "verify"),
        example=EXAMPLE_CODE,
        example_mobile=EXAMPLE_MOBILE,
    )


def _bind_reply(ctx: Ctx, state: str, mobile: str, minutes: int) -> Reply:
    return ctx.render(
        "phone_bind",
        state=state,
        mobile=mobile,
        minutes=minutes,
        bind=_first(ctx, "bind_phone"),
        word=_first(ctx, "verify"),
        example=EXAMPLE_CODE,
        example_mobile=EXAMPLE_MOBILE,
    )


def _first(ctx: Ctx, command: str) -> str:
    words = ctx.services.settings.chat.words(command)
    return words[0] if words else command
