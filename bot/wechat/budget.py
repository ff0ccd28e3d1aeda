"""The reply budget: how long a callback waits for its handler before answering.

WeChat waits 5 s and then retries, so we answer within about 4 s; a handler still
running then finishes in the background and its reply goes out by API.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol


class ReplyBudget(Protocol):
    """Waits for a task up to the budget."""

    async def wait(self, task: asyncio.Future[Any]) -> bool:
        """True if the task finished within the budget (the task is never cancelled)."""


class TimeoutBudget:
    """Production budget: a real timeout that leaves the task running."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def wait(self, task: asyncio.Future[Any]) -> bool:
        """Wait up to ``seconds``."""
        if task.done():
            return True
        done, _ = await asyncio.wait({task}, timeout=self.seconds)
        return bool(done)
