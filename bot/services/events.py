"""Member events (``first_subscribe``, ``tier_change``): a tiny in-process hub.

Producers ``emit`` after their own work is committed; subscribers (the SOP dispatcher's
``on_event``) run in turn. A subscriber's error is logged and never reaches the
producer: a follow is welcomed, a tier is changed, whatever a subscriber does.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

log = logging.getLogger(__name__)

FIRST_SUBSCRIBE, TIER_CHANGE = "first_subscribe", "tier_change"

Callback = Callable[[str, int, datetime], Awaitable[object]]


class EventHub:
    """Named member events and their subscribers (in subscription order)."""

    def __init__(self) -> None:
        self._subscribers: dict[str, list[Callback]] = {}

    def subscribe(self, event: str, callback: Callback) -> None:
        """Call ``callback(event, member_id, at)`` on every ``emit`` of ``event``."""
        self._subscribers.setdefault(event, []).append(callback)

    def subscribers(self, event: str) -> int:
        """How many callbacks listen to ``event``."""
        return len(self._subscribers.get(event, ()))

    async def emit(self, event: str, member_id: int, at: datetime) -> int:
        """Run the event's subscribers; returns how many succeeded (errors are logged)."""
        succeeded = 0
        for callback in list(self._subscribers.get(event, ())):
            try:
                await callback(event, member_id, at)
            except Exception:
                log.exception(
                    "event subscriber failed", extra={"event": event, "member_id": member_id}
                )
            else:
                succeeded += 1
        return succeeded
