"""Broadcasts from the WeCom agent (managers): 群发 drafts one and answers with its expected
reach and a one-time code, 确认 <code> starts it, 进度 [id] tells how it goes.

Progress and the final report come back later as agent messages
(bot.services.broadcast_progress); the flow itself is bot.services.broadcast_chat.
"""

from __future__ import annotations

import re

from bot.context import Ctx
from bot.filters import Regex
from bot.replies import Reply, TextReply
from bot.routing import Router
from bot.services import broadcast_labels, broadcast_progress
from bot.services.broadcast_chat import ChatBroadcasts
from bot.services.broadcast_content import BroadcastError
from bot.services.broadcast_progress import ENDED
from bot.services.staff import may, staff_actor
from bot.wechat.wecom_events import AgentText
from storage.repos import broadcast_confirmations as codes

router = Router("wecom_broadcast")

BROADCAST_ROLES = ("manager",)


@router.on(AgentText, Regex(r"群发(?:\s+(?P<rest>.*))?", re.S))
async def draft(event: AgentText, ctx: Ctx) -> Reply:
    """``群发 <segment> <template> [channel] [headline | body]``: reach and a code."""
    if (refused := await _refusal(event, ctx)) is not None:
        return refused
    chat = ChatBroadcasts.for_services(ctx.services)
    made = await chat.draft(event.from_user, str(ctx.match.get("rest", "")), ctx.now)
    reach = made.reach
    return ctx.render(
        "staff_broadcast",
        outcome=made.outcome,
        id=made.broadcast_id,
        code=made.code,
        minutes=made.minutes,
        known=made.known,
        more=made.more,
        error=made.error,
        total=reach.total if reach else 0,
        reached=reach.reached if reach else 0,
        excluded=broadcast_labels.reasons(reach.excluded) if reach else [],
    )


@router.on(AgentText, Regex(r"确认(?:\s*(?P<code>\S+))?"))
async def confirm(event: AgentText, ctx: Ctx) -> Reply:
    """``确认 <code>``: the same staff member, once, before expiry; starts in the background."""
    if (refused := await _refusal(event, ctx)) is not None:
        return refused
    chat = ChatBroadcasts.for_services(ctx.services)
    taken = await chat.confirm(event.from_user, str(ctx.match.get("code", "")), ctx.now)
    return ctx.render("staff_broadcast_confirm", outcome=taken.outcome, id=taken.broadcast_id)


@router.on(AgentText, Regex(r"进度(?:\s*#?(?P<id>\d{1,18}))?"))
async def progress(event: AgentText, ctx: Ctx) -> Reply:
    """``进度 [id]``: a broadcast's state and rows now (default: the staff member's latest)."""
    if (refused := await _refusal(event, ctx)) is not None:
        return refused
    broadcasts = ctx.services.broadcasts
    broadcast_id = int(ctx.match.get("id") or 0)
    if not broadcast_id:
        latest = await codes.latest_of(event.from_user)
        broadcast_id = int(latest.broadcast_id) if latest is not None else 0
    try:
        status = await broadcasts.status(broadcast_id)
    except BroadcastError:
        return ctx.render("staff_broadcast_confirm", outcome="no_broadcast", id=broadcast_id)
    b = await broadcasts.get(broadcast_id)
    report = await broadcasts.report(broadcast_id) if status["state"] in ENDED else {}
    quiet = broadcast_progress.quiet_until(broadcasts, b) if status["state"] == "sending" else ""
    text = broadcast_progress.render(
        broadcasts,
        broadcast_id,
        "status",
        name=b.name,
        status=status,
        report=report,
        quiet_until=quiet,
    )
    return TextReply(text)


async def _refusal(event: AgentText, ctx: Ctx) -> Reply | None:
    """The refusal for unregistered (or inactive) staff and roles other than manager."""
    actor = await staff_actor(event.from_user)
    if actor is None or not may(actor, BROADCAST_ROLES):
        return ctx.render("staff_refused", registered=actor is not None)
    return None
