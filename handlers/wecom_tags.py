"""change_external_tag: the corp tag library changed in WeCom (create, update, delete,
shuffle). Each event syncs the whole library, so TagGroup/Tag keep WeCom's ids, names and
order, and deleted tags or groups are marked deleted; events in any order end the same."""

from __future__ import annotations

import logging

from bot.context import Ctx
from bot.replies import NO_REPLY, Reply
from bot.routing import Router
from bot.services import wecom_tags
from bot.wechat.wecom_events import ExternalTagEvent

router = Router("wecom_tags")
log = logging.getLogger(__name__)


@router.on(ExternalTagEvent)
async def tag_library_changed(event: ExternalTagEvent, ctx: Ctx) -> Reply:
    """Resync the library (a failure raises: the callback is not marked handled)."""
    result = await wecom_tags.sync_tags(ctx.services.clients.wecom().tags)
    log.info(
        "corp tag library synced",
        extra={"change": event.change_type, "tags": result.tags, "deleted": result.deleted},
    )
    return NO_REPLY
