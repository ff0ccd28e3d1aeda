"""Group commit: what arrives while a batch is being written goes into the next batch.

One writer task per ``GroupCommit`` runs while there is work: it takes the oldest
queued item and up to ``cap - 1`` more with the same key (arrival order), writes them
with one call of ``write``, resolves each caller's future with its own result, and
takes the next batch. There is no timer: when idle, the first item starts a batch at
once; only items that arrive while a batch is being written wait, for the next one.

``write`` returns one result or exception per item, in order; an exception it raises
fails the whole batch. A caller that is cancelled stops waiting; its item is written
all the same (as a statement already sent would be).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from storage.futures import settle

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")

Write = Callable[[K, list[T]], Awaitable[list[R | Exception]]]


class GroupCommit(Generic[K, T, R]):
    """Batches concurrent submissions per key and writes one batch at a time."""

    def __init__(self, write: Write[K, T, R], cap: int = 200) -> None:
        if cap < 1:
            raise ValueError("cap must be at least 1")
        self._write = write
        self._cap = cap
        self._queue: list[tuple[K, T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, key: K, item: T) -> R:
        """Queue one item; its result (or exception) once its batch has been written."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((key, item, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain())
        return await future

    def _take(self) -> tuple[K, list[tuple[T, asyncio.Future[R]]]]:
        """The next batch: the oldest item's key, its items in order, at most ``cap``."""
        key = self._queue[0][0]
        batch: list[tuple[T, asyncio.Future[R]]] = []
        rest: list[tuple[K, T, asyncio.Future[R]]] = []
        for queued in self._queue:
            if queued[0] == key and len(batch) < self._cap:
                batch.append((queued[1], queued[2]))
            else:
                rest.append(queued)
        self._queue = rest
        return key, batch

    async def _drain(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._queue:
                key, batch = self._take()
                try:
                    results = await self._write(key, [item for item, _ in batch])
                except Exception as error:  # the batch failed as a whole: so did each item
                    results = [error] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    settle(future, result)
                batch = []
        finally:
            self._writer = None
            for future in [f for _, f in batch] + [f for _, _, f in self._queue]:
                future.cancel()  # only when the writer itself was cancelled (shutdown)
            self._queue = []
