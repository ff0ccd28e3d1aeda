"""Member activity off the reply path: last message time and last activity, batched.

Every member message refreshes the identity's customer-service window and every
activity the member's ``last_active_at``; writing that per callback would double the
hot path's database work, so it is coalesced per identity and flushed every five
seconds. A 48-hour window tolerates that; whatever decides a channel from these times
must call :meth:`ActivityRecorder.flush` first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from storage.repos import members as repo

log = logging.getLogger("bot.activity")
IdentityKey = tuple[str, str, str]


class ActivityRecorder:
    """Coalesces activity and writes it in one transaction per flush."""

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval
        self._messages: dict[IdentityKey, datetime] = {}
        self._events: dict[IdentityKey, datetime] = {}
        self._active: dict[int, datetime] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def touch(
        self,
        identity: IdentityKey,
        member_id: int,
        at: datetime,
        message: bool,
        event: bool = False,
    ) -> None:
        """Note activity (and the identity's last message, or scan/click event, time)."""
        if message:
            self._messages[identity] = max(at, self._messages.get(identity, at))
        if event:  # a scan or menu click opens the 60 s customer-service window
            self._events[identity] = max(at, self._events.get(identity, at))
        self._active[member_id] = max(at, self._active.get(member_id, at))

    async def start(self) -> None:
        """Start flushing in the background."""
        self._task = asyncio.create_task(self._run(), name="activity-recorder")

    async def stop(self) -> None:
        """Stop and write what is left (the flusher is asked to end, never cancelled
        inside a flush, which would drop the batch it had taken)."""
        if self._task is not None:
            self._stopping.set()
            await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)
            try:
                await self.flush()
            except Exception:
                log.exception("could not record member activity; will retry")

    async def flush(self) -> None:
        """Write the coalesced activity now."""
        if not self._messages and not self._active and not self._events:
            return
        messages, self._messages = self._messages, {}
        events, self._events = self._events, {}
        active, self._active = self._active, {}
        try:
            await repo.apply_activity(messages, active, events)
        except BaseException:  # a cancellation too: nothing noted is lost
            for key, at in messages.items():
                self._messages[key] = max(at, self._messages.get(key, at))
            for key, at in events.items():
                self._events[key] = max(at, self._events.get(key, at))
            for member_id, at in active.items():
                self._active[member_id] = max(at, self._active.get(member_id, at))
            raise
