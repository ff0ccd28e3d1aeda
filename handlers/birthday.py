"""生日 1990-05-20: the member sets their birthday once; a second attempt is refused."""

from __future__ import annotations

from typing import Any

from wechatpy.events import ClickEvent
from wechatpy.messages import TextMessage

from bot.context import Ctx
from bot.filters import Command, CommandKey
from bot.replies import Reply
from bot.routing import Router
from bot.services import birthday

router = Router("birthday")

EXAMPLE = "生日 1990-05-20"


@router.on(TextMessage, Command("birthday", takes_argument=True))
async def birthday_text(event: Any, ctx: Ctx) -> Reply:
    """Set the birthday from the argument; bare 生日 explains the format."""
    assert ctx.member is not None  # the member middleware resolves every OA sender
    argument = str(ctx.match.get("argument", ""))
    if not argument:
        return await _explain(ctx)
    try:
        born = birthday.parse(argument, ctx.now.astimezone(ctx.services.settings.tz).date())
    except birthday.InvalidBirthday:
        return ctx.render("birthday", state="invalid", day="", example=EXAMPLE)
    result = await birthday.set_once(ctx.member.id, born)
    state = "set" if result.set else "locked"
    return ctx.render("birthday", state=state, day=result.birthday.isoformat(), example=EXAMPLE)


@router.on(ClickEvent, CommandKey("birthday"))
async def birthday_menu(event: Any, ctx: Ctx) -> Reply:
    """A 生日 menu button: the stored date, or how to set it."""
    return await _explain(ctx)


async def _explain(ctx: Ctx) -> Reply:
    assert ctx.member is not None
    stored = await birthday.stored(ctx.member.id)
    if stored is not None:
        return ctx.render("birthday", state="locked", day=stored.isoformat(), example=EXAMPLE)
    return ctx.render("birthday", state="ask", day="", example=EXAMPLE)
