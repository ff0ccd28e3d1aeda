"""Coalesce concurrent writes or reads: callers that arrive together share one call.

Each caller queues its item and takes the lock; the caller that gets it handles every
item queued so far (its own and any that arrived meanwhile) with one call of ``write``,
in its own task, and resolves the others' results; a caller whose item was in an earlier
call just returns that result. Nothing waits for a timer, and nothing runs in another
task: a cancelled caller stops its own call, and the callers whose batch was cancelled
or failed get that error. An item that arrives while a call is in flight waits for the
next call, so a read never answers with a value older than its caller's arrival.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Write = Callable[[list[T]], Awaitable[list[R]]]


class Coalescer(Generic[T, R]):
    """Handles concurrently submitted items in batches of at most ``cap``."""

    def __init__(self, write: Write[T, R], cap: int = 1000) -> None:
        self._write = write
        self._cap = cap
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._lock = asyncio.Lock()

    async def submit(self, item: T) -> R:
        """Queue one item; its result once the batch that carried it has been written."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        async with self._lock:
            while not future.done():  # past ``cap`` queued items it may take two writes
                await self._write_some()
        return future.result()

    async def _write_some(self) -> None:
        batch, self._queue = self._queue[: self._cap], self._queue[self._cap :]
        try:
            results = await self._write([item for item, _ in batch])
        except Exception as error:  # the whole batch failed: so did each of its items
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        except BaseException:  # cancelled: the others of the batch learn it, the rest waits
            for _, future in batch:
                if not future.done():
                    future.set_exception(RuntimeError("the call carrying this item was cancelled"))
            raise
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)
