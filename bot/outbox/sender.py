"""The outbound sender: claims due OutboxMessage rows and sends each at most once.

A pass claims a batch (with a lease) and sends it with up to ``[outbound] concurrency``
calls in flight. Rows of one call each go in windows (:meth:`Sender._send_windows`): a
window of rows of one bucket (at most its burst) takes its tokens in one reservation, turns
``sending`` in one statement (committed) just before its calls go out side by side, and
its settles share one statement per outcome (:mod:`bot.outbox.batching`); the rows
sending and not yet settled never outnumber the concurrency. Calls are made with the client's
retries off (:func:`single_attempt`), so an answer settles the row at once
(:mod:`bot.outbox.policy`): rate and quota codes put it back ``pending`` with a due time,
an unknown outcome makes it ``unknown`` unless the channel is idempotent. WeCom customer
and customer-group rows go out as group tasks (:mod:`bot.outbox.wecom_tasks`), OA mass
rows as mass jobs (:mod:`bot.outbox.oa_mass`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import deque
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING

from bot.clients.caller import single_attempt
from bot.clients.registry import Clients
from bot.clock import BusinessClock
from bot.config_outbound import OutboundSettings
from bot.outbox.batching import RowWrites
from bot.outbox.channels import CHANNELS, Channel, UnknownChannel, app_id, channel_of, deliver
from bot.outbox.oa_mass import CHANNEL as OA_MASS
from bot.outbox.oa_mass import MassSender
from bot.outbox.policy import SENT, Outcome, classify
from bot.outbox.ratelimit import MemoryBuckets, RateLimiter, make_limiter
from bot.outbox.wecom_tasks import TASK_CHANNELS, TaskSender
from bot.services.marketing import MarketingPolicy
from bot.templating import Renderer
from storage.models import OutboxMessage
from storage.repos import outbox

if TYPE_CHECKING:
    from bot.context import Services

log = logging.getLogger("bot.outbox")
LEASE = timedelta(seconds=90)
__all__ = ["LEASE", "Sender", "UnknownChannel"]


QUIET_CHANNELS = frozenset({"oa_cs", OA_MASS})
# One call per row: sent in windows (Sender._send_windows); the others carry many rows.
WINDOWED = frozenset(CHANNELS) - TASK_CHANNELS - {OA_MASS}


class Sender:
    """Claims batches and sends them; any number per PostgreSQL, one per SQLite database."""

    def __init__(
        self,
        clients: Clients,
        clock: BusinessClock,
        batch: int | None = None,
        idle: float = 1.0,
        *,
        settings: OutboundSettings | None = None,
        limiter: RateLimiter | None = None,
        renderer: Renderer | None = None,
    ) -> None:
        self.clients = clients
        self.clock = clock
        self.settings = settings or clients.settings.outbound
        self.batch = batch or self.settings.batch
        self.idle = idle
        self.limiter = limiter or MemoryBuckets(self.settings, clients.now, clients.sleep)
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.tasks = TaskSender(
            clients, clock, self.limiter, self.settings, renderer or Renderer(), self.worker, LEASE
        )
        self.writes = RowWrites(self.worker, LEASE, clock.now, self.settings.concurrency)
        self.mass = MassSender(clients, clock, self.limiter, self.settings, self.worker, LEASE)
        self.policy = MarketingPolicy(clients.settings.sop, clients.settings.tz)
        self._wakeup = asyncio.Event()

    @classmethod
    def for_services(cls, services: Services) -> Sender:
        """The sender of a process: buckets in Redis when the cache is Redis."""
        settings = services.settings.outbound
        limiter = make_limiter(
            settings, services.cache, services.keys, services.wall.time, services.clients.sleep
        )
        return cls(
            services.clients,
            services.clock,
            settings=settings,
            limiter=limiter,
            renderer=services.renderer,
        )

    def wake(self) -> None:
        """New work was enqueued in this process."""
        self._wakeup.set()

    async def run(self) -> None:
        """Send until cancelled."""
        while True:
            try:
                sent = await self.run_once()
            except Exception:
                log.exception("outbox pass failed")
                sent = 0
            if not sent:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.idle):
                        await self._wakeup.wait()
                self._wakeup.clear()

    async def run_once(self) -> int:
        """One pass: recover abandoned rows, claim a batch, send it; returns rows handled."""
        now = self.clock.now()
        abandoned = await outbox.mark_abandoned(now)
        if abandoned:
            log.warning("outbox rows left sending by a dead sender", extra={"count": abandoned})
        rows = await outbox.claim(self.worker, now, LEASE, self.batch)
        if rows:
            try:
                await self._send_all(_one_per_task(rows))
            finally:  # rows not sent (a failure, quiet hours) are due again at once
                await outbox.release_claims(self.worker, [row.id for row in rows])
        return len(rows)

    async def drain(self, max_passes: int = 100) -> None:
        """Send everything that is due now (CLI commands and tests)."""
        for _ in range(max_passes):
            if not await self.run_once():
                return

    async def _send_all(self, rows: list[OutboxMessage]) -> None:
        slots = asyncio.Semaphore(self.settings.concurrency)  # rows sending, not settled
        windowed = [r for r in rows if r.channel in WINDOWED]
        queue = deque(r for r in rows if r.channel not in WINDOWED)

        async def work() -> None:
            while queue:
                row = queue.popleft()
                try:
                    async with slots:
                        await self.send_one(row)
                except Exception:  # one row's storage error must not stop its batch
                    log.exception("outbox row not settled", extra={"outbox_id": row.id})

        async with asyncio.TaskGroup() as group:
            for _ in range(min(self.settings.concurrency, len(queue))):
                group.create_task(work())
            if windowed:
                group.create_task(self._send_windows(windowed, slots, group))

    async def _send_windows(
        self, rows: list[OutboxMessage], slots: asyncio.Semaphore, group: asyncio.TaskGroup
    ) -> None:
        """Per-recipient rows in windows of one bucket: the window takes a slot per row and
        its tokens in one reservation, turns ``sending`` in one statement (committed), and
        its calls go out side by side. Rows sending and not yet settled never outnumber the
        slots (the concurrency), so a sender killed at any point leaves at most that many
        ``unknown``. A window that fails to be built (Redis, the database) is never called:
        its rows stay ``pending`` and go back with the batch, and nothing of it reaches
        ``group``, whose calls in flight go on."""
        todo = deque(rows)
        while todo:
            window: list[tuple[OutboxMessage, Channel]] = []
            try:
                bucket = await self._fill_window(todo, window, slots)
                if bucket is not None:
                    await self.limiter.acquire_many(*bucket, len(window))
            except BaseException as exc:
                for _ in window:
                    slots.release()
                if not isinstance(exc, Exception):
                    raise
                log.exception("outbox window not built", extra={"count": len(window)})
                continue
            if window:
                await self._start_window(window, slots, group)

    async def _fill_window(
        self,
        todo: deque[OutboxMessage],
        window: list[tuple[OutboxMessage, Channel]],
        slots: asyncio.Semaphore,
    ) -> tuple[str, str, str] | None:
        """Move the next rows of one bucket from ``todo`` into ``window``, a slot each; the
        bucket (None: every row taken was held). A window is at most a quarter of the
        concurrency and the bucket's burst: its calls go out at once when the last token is
        due, so more than the burst would outrun the pace (and the platform's own limit)."""
        size = max(1, self.settings.concurrency // 4)
        bucket: tuple[str, str, str] | None = None
        while todo and len(window) < size:
            row = todo.popleft()  # taken first: a row that fails here is not retried now
            channel = CHANNELS[row.channel]
            key = (channel.platform, app_id(self.clients, row, channel), channel.api)
            if bucket is not None and key != bucket:
                todo.appendleft(row)  # the next window starts with this row
                break
            if await self._held_by_quiet_hours(row):
                continue
            if window and slots.locked():
                todo.appendleft(row)  # no slot free: send what the window holds
                break
            await slots.acquire()
            window.append((row, channel))
            if bucket is None:
                bucket = key
                size = min(size, self.limiter.burst(channel.platform, channel.api))
        return bucket

    async def _start_window(
        self,
        window: list[tuple[OutboxMessage, Channel]],
        slots: asyncio.Semaphore,
        group: asyncio.TaskGroup,
    ) -> None:
        ids = [row.id for row, _ in window]
        try:
            won = await self.writes.start_all(ids)
        except Exception:  # its commit unknown, but surely never called: pending again
            log.exception("outbox window not started", extra={"count": len(window)})
            won = set()
            await self._release_uncalled(ids)
        calls = [(row, channel) for row, channel in window if row.id in won]
        for _ in range(len(window) - len(calls)):
            slots.release()  # rows another sender took over (or not started): not called
        if calls:
            group.create_task(self._call_window(calls, slots))

    async def _release_uncalled(self, ids: list[int]) -> None:
        """Rows whose start failed go back to the pool, ``sending`` or not: no call of theirs
        was made (left as they are, a ``sending`` row would become ``unknown``)."""
        try:
            await outbox.release_uncalled(self.worker, ids)
        except Exception:  # their lease lapses instead
            log.exception("outbox rows not released", extra={"count": len(ids)})

    async def _call_window(
        self, calls: list[tuple[OutboxMessage, Channel]], slots: asyncio.Semaphore
    ) -> None:
        """The window's calls side by side, then their settles together (one statement per
        outcome); the window's slots are free again once it is settled."""
        try:
            outcomes = await asyncio.gather(*(self._outcome(r, c) for r, c in calls))
            settled = await asyncio.gather(
                *(self._record(row, o) for (row, _), o in zip(calls, outcomes, strict=True)),
                return_exceptions=True,
            )
            for (row, _), result in zip(calls, settled, strict=True):
                if isinstance(result, Exception):
                    extra = {"outbox_id": row.id}
                    log.error("outbox row not settled", exc_info=result, extra=extra)
        finally:
            for _ in calls:
                slots.release()

    async def send_one(self, row: OutboxMessage) -> None:
        """Send one claimed row (a WeCom customer row: its whole task) and record the outcome."""
        if row.channel in TASK_CHANNELS:
            await self.tasks.send(row)
            return
        if await self._held_by_quiet_hours(row):
            return
        if row.channel == OA_MASS:
            await self.mass.send(row)
            return
        try:
            channel = channel_of(row)
        except UnknownChannel:
            if await outbox.start_sending(row, self.worker, self.clock.now(), LEASE):
                await outbox.settle(row.id, "failed", f"unknown channel {row.channel}")
            return
        await self.limiter.acquire(
            channel.platform, app_id(self.clients, row, channel), channel.api
        )
        if await self.writes.start(row.id):
            await self._record(row, await self._outcome(row, channel))

    async def _outcome(self, row: OutboxMessage, channel: Channel) -> Outcome:
        """Make the row's one call (the row is ``sending``, committed); how it ended."""
        try:
            with single_attempt():
                await deliver(self.clients, row)
            return SENT
        except Exception as exc:
            now = self.clock.now()
            attempts = row.attempts + 1
            return classify(exc, channel.platform, now, self.settings, channel.idempotent, attempts)

    async def _held_by_quiet_hours(self, row: OutboxMessage) -> bool:
        """Marketing to members over OA waits out the quiet hours, however late its row got
        here (a backlog, retries); WeCom tasks go when their staff choose."""
        if row.kind != "marketing" or row.channel not in QUIET_CHANNELS:
            return False
        until = self.policy.quiet_until(self.clock.now())
        if until is None:
            return False
        await outbox.postpone_claimed(row.id, self.worker, until, "quiet hours")
        return True

    async def _record(self, row: OutboxMessage, outcome: Outcome) -> None:
        if outcome.retry_at is not None:
            await self.writes.retry(row.id, outcome.retry_at, outcome.reason)
        else:
            sent_at = self.clock.now() if outcome.status == "sent" else None
            await self.writes.settle(row.id, outcome.status, outcome.reason, sent_at)
        extra = {"outbox_id": row.id, "channel": row.channel, "status": outcome.status}
        log.info("outbox row settled", extra={**extra, "reason": outcome.reason})


def _one_per_task(rows: Iterable[OutboxMessage]) -> list[OutboxMessage]:
    """Claimed rows, one row standing for each WeCom task or mass group (it gathers the
    rest), and the first of each recipient's per-recipient rows: a pass sends its calls
    side by side, so a recipient's second message waits for the next pass (it stays
    pending; claims are in due order), and a member reads a chat's messages in order."""
    seen: set[tuple[str, str, str, str]] = set()
    kept = []
    for row in rows:
        if row.channel in TASK_CHANNELS or row.channel == OA_MASS:
            key = (row.channel, row.account, row.group_key, row.staff_userid)
        else:
            key = ("to", row.channel, row.account, row.recipient)
        if key in seen:
            continue
        seen.add(key)
        kept.append(row)
    return kept
