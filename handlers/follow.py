"""关注 / 取消关注: every follower becomes a member; unfollowing deletes nothing.

A subscribe records the scene's channel on a member it created, credits the referrer of
a genuinely new member (``ref_<code>`` scenes), and leaves the unionid to a background
task: the welcome never waits for the platform.
"""

from __future__ import annotations

from typing import Any

from wechatpy.events import ScanEvent, SubscribeEvent, SubscribeScanEvent, UnsubscribeEvent

from bot.context import Ctx
from bot.replies import NO_REPLY, Reply
from bot.routing import Router
from bot.services.events import FIRST_SUBSCRIBE

router = Router("follow")

# Display names until tiers come from the configuration (DESIGN §4 defaults).
TIER_NAMES = {"basic": "普卡", "silver": "银卡", "gold": "金卡"}


def _scene(event: Any) -> str:
    # SubscribeScanEvent and ScanEvent carry the scene in EventKey (qrscene_ stripped).
    return str(getattr(event, "scene_id", "") or "")


@router.on((SubscribeEvent, SubscribeScanEvent))
async def subscribe(event: Any, ctx: Ctx) -> Reply:
    """Follow (or re-follow): mark the identity followed and welcome the member."""
    assert ctx.member is not None  # the member middleware resolves every OA sender
    services, scene = ctx.services, _scene(event)
    returning = await services.members.follow(ctx.inbound, followed=True)
    if ctx.member.created:
        await services.binding.record_channel(ctx.member.id, scene)
        await services.events.emit(FIRST_SUBSCRIBE, ctx.member.id, ctx.now)
    referral = await services.referrals.on_subscribe(ctx.member, scene, followed_before=returning)
    services.binding.bind_later(ctx.inbound, ctx.member)
    member = await services.members.get(ctx.member.id)
    assert member is not None
    return ctx.render(
        "welcome",
        code=member.code,
        tier=TIER_NAMES.get(member.tier, member.tier),
        points=member.points_balance,
        returning=returning,
        referred=referral.status == "rewarded",
    )


@router.on(ScanEvent)
async def scan(event: Any, ctx: Ctx) -> Reply:
    """A follower scanned a scene code: a member created by it gets the scene's channel."""
    assert ctx.member is not None
    if ctx.member.created:
        await ctx.services.binding.record_channel(ctx.member.id, _scene(event))
        ctx.services.binding.bind_later(ctx.inbound, ctx.member)
    return NO_REPLY


@router.on(UnsubscribeEvent)
async def unsubscribe(event: Any, ctx: Ctx) -> Reply:
    """Unfollow: the identity is marked, the member and their points stay."""
    await ctx.services.members.follow(ctx.inbound, followed=False)
    return NO_REPLY
