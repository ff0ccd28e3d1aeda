"""Late replies: a handler that missed the reply budget answers by API through the outbox."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.clock import BusinessClock
from bot.replies import ImageReply, NewsReply, Reply, TextReply
from bot.wechat.inbound import Inbound
from storage.repos import outbox


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
    """The intake's late-reply hook: an OA customer-service or WeCom agent message row."""

    def __init__(self, clock: BusinessClock, wake: Callable[[], None]) -> None:
        self.clock = clock
        self.wake = wake

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
        await outbox.enqueue(message, self.clock.now())
        self.wake()
