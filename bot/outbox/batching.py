"""The sender's per-row statements, coalesced across the calls in flight.

Rows whose calls run side by side share their writes (:class:`bot.coalesce.Coalescer`):
one statement turns the rows about to be called ``sending``, one settles the rows whose
calls have returned with the same outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from bot.coalesce import Coalescer
from storage.repos import outbox, outbox_tasks

Settle = tuple[int, str, str, datetime | None]  # row id, status, reason, sent_at
Retry = tuple[int, datetime, str]  # row id, due_at, reason


class RowWrites:
    """The sender's two per-row writes, coalesced across the calls in flight.

    ``start``: pending → sending, committed before the row's own call (the caller makes
    the call only after it returned True). ``settle``: the row's call has returned; rows
    with the same outcome are written together (``sent_at``: when the last of them
    returned). A sender killed between a call and its settle leaves the row ``sending``,
    which becomes ``unknown``: never re-sent.
    """

    def __init__(
        self, worker: str, lease: timedelta, now: Callable[[], datetime], cap: int
    ) -> None:
        self.worker, self.lease, self.now = worker, lease, now
        self._starts: Coalescer[int, bool] = Coalescer(self._start_many, cap)
        self._settles: Coalescer[Settle, None] = Coalescer(self._settle_many, cap)
        self._retries: Coalescer[Retry, None] = Coalescer(self._retry_many, cap)

    async def start(self, row_id: int) -> bool:
        """pending → sending (committed); False if this worker no longer owns the row."""
        return await self._starts.submit(row_id)

    async def start_all(self, row_ids: list[int]) -> set[int]:
        """A window of rows pending → sending in one statement (committed); the ids this
        worker still owned (the caller calls those only)."""
        return await outbox.start_many(row_ids, self.worker, self.now(), self.lease)

    async def settle(
        self, row_id: int, status: str, reason: str = "", sent_at: datetime | None = None
    ) -> None:
        """Record how the row's call ended (after it returned)."""
        await self._settles.submit((row_id, status, reason, sent_at))

    async def retry(self, row_id: int, due_at: datetime, reason: str) -> None:
        """The call provably did not happen (an error answer): pending again at ``due_at``."""
        await self._retries.submit((row_id, due_at, reason))

    async def _start_many(self, ids: list[int]) -> list[bool]:
        won = await outbox.start_many(ids, self.worker, self.now(), self.lease)
        return [row_id in won for row_id in ids]

    async def _settle_many(self, items: list[Settle]) -> list[None]:
        groups: dict[tuple[str, str], list[Settle]] = {}
        for item in items:
            groups.setdefault((item[1], item[2]), []).append(item)
        for (status, reason), group in groups.items():
            times = [when for _, _, _, when in group if when is not None]
            ids = [row_id for row_id, _, _, _ in group]
            await outbox.settle_rows(ids, status, reason, max(times) if times else None)
        return [None] * len(items)

    async def _retry_many(self, items: list[Retry]) -> list[None]:
        groups: dict[str, list[Retry]] = {}
        for item in items:
            groups.setdefault(item[2], []).append(item)
        for reason, group in groups.items():  # due at the latest of the group's times
            due = max(when for _, when, _ in group)
            await outbox_tasks.retry_many([row_id for row_id, _, _ in group], due, reason)
        return [None] * len(items)
