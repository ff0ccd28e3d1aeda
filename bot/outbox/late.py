"""Late replies: a handler that missed the reply budget answers by API through the outbox."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.clock import BusinessClock
from bot.config import Settings
from bot.replies import ImageReply, NewsReply, Reply, TextReply
from bot.services.activity import ActivityRecorder
from bot.wechat.inbound import Inbound
from storage.models.members import OA_OPENID
from storage.repos import notify, outbox


def reply_payload(reply: Reply) -> dict[str, Any] | None:
    """The outbox payload for a reply; None for replies that only exist passively."""
    if isinstance(reply, TextReply):
        return {"text": reply.content}
    if isinstance(reply, NewsReply):
        news = {
            "title": reply.title,
            "description": reply.description,
            "url": reply.url,
            "picurl": reply.image_url,
        }
        return {"news": news}
    if isinstance(reply, ImageReply):
        return {"image": {"media_id": reply.media_id}}
    return None


class OutboxLateReplies:
    """The intake's late-reply hook: an OA customer-service or WeCom agent message row.

    An OA late reply is a customer-service message: it is counted against the member's
    window in the database like every notice (after the batched activity is written, so
    the member's own message has reset the counters first).
    """

    def __init__(
        self,
        clock: BusinessClock,
        wake: Callable[[], None],
        settings: Settings | None = None,
        activity: ActivityRecorder | None = None,
    ) -> None:
        self.clock = clock
        self.wake = wake
        self.settings = settings
        self.activity = activity

    async def __call__(self, inbound: Inbound, reply: Reply) -> None:
        """Enqueue the reply once per callback (keyed by its dedupe key)."""
        payload = reply_payload(reply)
        if payload is None:
            return
        channel = "oa_cs" if inbound.platform == "oa" else "wecom_agent"
        message = outbox.NewMessage(
            idempotency_key=f"late:{inbound.dedupe_key}",
            channel=channel,
            account=inbound.account,
            recipient=inbound.sender,
            payload=payload,
            source="late_reply",
        )
        if inbound.platform == "oa" and self.settings is not None:
            if self.activity is not None:
                await self.activity.flush()
            appid = self.settings.accounts[inbound.account].appid
            identity = (OA_OPENID, appid, inbound.sender)
            await notify.enqueue_reply_counted(identity, message, self.clock.now())
        else:
            await outbox.enqueue(message, self.clock.now())
        self.wake()
