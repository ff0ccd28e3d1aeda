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
        """Wait up to ``seconds``.

        One future woken by the task's completion or by a timer: what ``asyncio.wait``
        does for one task, without its set, its generic bookkeeping and a second wake-up.
        """
        if task.done():
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()

        def wake(_: object = None) -> None:
            if not waiter.done():
                waiter.set_result(None)

        timer = loop.call_later(self.seconds, wake)
        task.add_done_callback(wake)
        try:
            await waiter
        finally:
            timer.cancel()
            task.remove_done_callback(wake)
        return task.done()
