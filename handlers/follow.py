"""关注 / 取消关注: every follower becomes a member; unfollowing deletes nothing."""

from __future__ import annotations

from typing import Any

from wechatpy.events import SubscribeEvent, SubscribeScanEvent, UnsubscribeEvent

from bot.context import Ctx
from bot.replies import NO_REPLY, Reply
from bot.routing import Router

router = Router("follow")

# Display names until tiers come from the configuration (DESIGN §4 defaults).
TIER_NAMES = {"basic": "普卡", "silver": "银卡", "gold": "金卡"}


@router.on((SubscribeEvent, SubscribeScanEvent))
async def subscribe(event: Any, ctx: Ctx) -> Reply:
    """Follow (or re-follow): mark the identity followed and welcome the member."""
    assert ctx.member is not None  # the member middleware resolves every OA sender
    members = ctx.services.members
    returning = await members.follow(ctx.inbound, followed=True)
    member = await members.get(ctx.member.id)
    assert member is not None
    return ctx.render(
        "welcome",
        code=member.code,
        tier=TIER_NAMES.get(member.tier, member.tier),
        points=member.points_balance,
        returning=returning,
    )


@router.on(UnsubscribeEvent)
async def unsubscribe(event: Any, ctx: Ctx) -> Reply:
    """Unfollow: the identity is marked, the member and their points stay."""
    await ctx.services.members.follow(ctx.inbound, followed=False)
    return NO_REPLY
