"""change_external_chat: keep the customer-group roster (create, update, dismiss)."""

from __future__ import annotations

from bot.context import Ctx
from bot.replies import NO_REPLY, Reply
from bot.routing import Router
from bot.services import wecom_groups
from bot.wechat.wecom_events import ExternalChatCreate, ExternalChatDismiss, ExternalChatUpdate

router = Router("wecom_groups")


@router.on((ExternalChatCreate, ExternalChatUpdate))
async def chat_changed(event: ExternalChatCreate | ExternalChatUpdate, ctx: Ctx) -> Reply:
    """Re-fetch the group and diff the roster (leavers get the event's QuitScene)."""
    quit_scene = event.quit_scene if isinstance(event, ExternalChatUpdate) else None
    await wecom_groups.refresh_group(ctx.services, event.chat_id, ctx.now, quit_scene)
    return NO_REPLY


@router.on(ExternalChatDismiss)
async def chat_dismissed(event: ExternalChatDismiss, ctx: Ctx) -> Reply:
    """The group is gone: mark it dismissed, keep its roster."""
    await wecom_groups.dismiss_group(event.chat_id, ctx.now)
    return NO_REPLY
