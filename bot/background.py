"""Work started by a callback that must not hold up its reply, tracked for shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("bot.background")


class Background:
    """Runs coroutines as tasks the reply does not await; errors are logged, never raised.

    Shutdown (``close``) waits a while for running tasks and cancels what is left; tests
    call ``idle`` to wait for everything started so far instead of sleeping.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def spawn(self, work: Coroutine[Any, Any, object], name: str) -> None:
        """Start ``work`` in the background (dropped, with a log line, after shutdown)."""
        if self._closed:
            work.close()
            log.warning("background work dropped at shutdown", extra={"task": name})
            return
        task = asyncio.create_task(self._guarded(work, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, work: Coroutine[Any, Any, object], name: str) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background work failed", extra={"task": name})

    @property
    def running(self) -> int:
        """How many tasks are still running."""
        return len(self._tasks)

    async def idle(self) -> None:
        """Wait until every task (including ones started meanwhile) has finished."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def close(self, seconds: float = 10.0) -> None:
        """Stop taking work, wait up to ``seconds`` for running tasks, cancel the rest."""
        self._closed = True
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=seconds)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
