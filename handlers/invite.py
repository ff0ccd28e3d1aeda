"""邀请: the member's referral QR code, as an image (or its link when that fails)."""

from __future__ import annotations

from typing import Any

from wechatpy.events import ClickEvent
from wechatpy.messages import TextMessage

from bot.context import Ctx
from bot.filters import Command, CommandKey
from bot.replies import ImageReply, Reply
from bot.routing import Router

router = Router("invite")


@router.on(TextMessage, Command("invite"))
async def invite_text(event: Any, ctx: Ctx) -> Reply:
    """Answer 邀请 with the member's referral QR code."""
    return await _invite(ctx)


@router.on(ClickEvent, CommandKey("invite"))
async def invite_menu(event: Any, ctx: Ctx) -> Reply:
    """The 邀请 menu button."""
    return await _invite(ctx)


async def _invite(ctx: Ctx) -> Reply:
    assert ctx.member is not None  # the member middleware resolves every OA sender
    referral = ctx.services.settings.referral
    if not referral.enabled:
        return ctx.render("invite", enabled=False, url="", points=0, days=0)
    invite = await ctx.services.referrals.invite(ctx.inbound.account, ctx.member.code)
    if invite.media_id:
        return ImageReply(invite.media_id)
    return ctx.render(
        "invite", enabled=True, url=invite.url, points=referral.points, days=referral.qr_days
    )
