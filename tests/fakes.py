"""Test doubles injected through ``create_app(settings, overrides)``."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.replies import Reply
from bot.wechat.inbound import Inbound


class FakeWall:
    """A wall clock that only moves when told."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        """The pinned time."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move forward."""
        self.now += seconds


class ManualBudget:
    """A reply budget that expires only when the test fires it."""

    def __init__(self) -> None:
        self._fired: asyncio.Event | None = None
        self._waiting: asyncio.Event | None = None

    def _events(self) -> tuple[asyncio.Event, asyncio.Event]:
        if self._fired is None or self._waiting is None:
            self._fired, self._waiting = asyncio.Event(), asyncio.Event()
        return self._fired, self._waiting

    def fire(self) -> None:
        """Expire every current and later wait."""
        self._events()[0].set()

    async def waiting(self) -> None:
        """Return once some callback is waiting on the budget."""
        await self._events()[1].wait()

    async def wait(self, task: asyncio.Future[Any]) -> bool:
        """Wait for the task or the firing, whichever comes first."""
        if task.done():
            return True
        fired, waiting = self._events()
        waiting.set()
        expiry = asyncio.ensure_future(fired.wait())
        try:
            done, _ = await asyncio.wait({task, expiry}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            expiry.cancel()
        return task in done


class RecordingLateHook:
    """Collects late replies and lets a test await the next one."""

    def __init__(self) -> None:
        self.replies: list[tuple[Inbound, Reply]] = []
        self._arrived: asyncio.Event | None = None

    async def __call__(self, inbound: Inbound, reply: Reply) -> None:
        """Record one late reply."""
        self.replies.append((inbound, reply))
        if self._arrived is not None:
            self._arrived.set()

    async def next(self) -> tuple[Inbound, Reply]:
        """Wait (briefly) until a late reply has arrived."""
        if self._arrived is None:
            self._arrived = asyncio.Event()
        if not self.replies:
            async with asyncio.timeout(2):
                await self._arrived.wait()
        return self.replies[-1]
