"""Exactly-once intake: dedupe WeChat's retries, answer within the budget, record.

A callback's dedupe key is claimed once (Redis ``SET NX`` or in-process; from a member, in
the same round trip as the sender gate's rate count, lock and identity read). The owner runs
the dispatcher in a task and waits for it up to the reply budget; the plaintext reply it
gives (or ``success`` when late) is cached, so a retry gets the same answer re-encrypted
with its own nonce and timestamp, and never a second side effect. A retry arriving while
the first delivery is still running waits (within its own budget) for that result.

When the cache cannot be reached (:class:`CacheError`) the callback still gets an answer at
once: ``success`` when the claim failed (nothing ran: dedupe cannot be trusted), the reply
when only caching it failed (a retry then gets ``success``; the lock expires with its TTL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

from bot.context import Ctx, LateReplyHook, Services, Trace
from bot.metrics import Metrics
from bot.middlewares import SenderGateMiddleware
from bot.replies import NO_REPLY, Reply, render_reply
from bot.routing import Dispatcher
from bot.wechat.budget import ReplyBudget
from bot.wechat.inbound import Inbound
from storage.cache import Admission, Cache, CacheError, Gate, Held
from storage.keys import KeyBuilder
from storage.repos.inbound import InboundRecord, InboundRecorder

log = logging.getLogger("bot.intake")
SUCCESS = "success"


class Deduper:
    """Claims dedupe keys and hands cached replies to retries."""

    def __init__(self, cache: Cache, keys: KeyBuilder, poll_interval: float = 0.02) -> None:
        self.cache = cache
        self.keys = keys
        self.poll_interval = poll_interval
        self._inflight: dict[str, asyncio.Future[str]] = {}

    async def claim(self, key: str) -> bool:
        """True when this delivery is the first; it must then call :meth:`finish`."""
        if key in self._inflight or not await self.cache.claim(self.keys.inbound(key)):
            return False
        self._inflight[key] = asyncio.get_running_loop().create_future()
        return True

    async def claim_admit(self, key: str, gate: Gate) -> Admission | None:
        """:meth:`claim` and the sender gate's first step in one cache call (see
        :meth:`Cache.claim_admit`); None when this delivery is not the first."""
        if key in self._inflight:
            return None
        admission = await self.cache.claim_admit(self.keys.inbound(key), gate)
        if admission is not None:
            self._inflight[key] = asyncio.get_running_loop().create_future()
        return admission

    async def finish(self, key: str, reply: str, release: Held | None = None) -> None:
        """Publish the reply given to the first delivery (and release the sender's lock)."""
        future = self._inflight.pop(key, None)
        if future is not None and not future.done():
            future.set_result(reply)
        try:
            await self.cache.put(self.keys.reply(key), reply, release)
        except CacheError as exc:  # this delivery still answers; its lock expires
            log.warning("reply not cached: %s", exc, extra={"event_id": key})

    async def remember(self, key: str) -> None:
        """Mark a key seen (after a restart) with the empty reply."""
        await self.cache.claim(self.keys.inbound(key))
        await self.cache.put(self.keys.reply(key), SUCCESS)

    async def reply_for(self, key: str, budget: ReplyBudget) -> str:
        """The first delivery's reply, waiting for it within the budget; else ``success``."""
        waiter = asyncio.ensure_future(self._await_reply(key))
        try:
            if await budget.wait(waiter):
                return waiter.result()
            return SUCCESS
        finally:
            waiter.cancel()

    async def _await_reply(self, key: str) -> str:
        future = self._inflight.get(key)
        if future is not None:
            return await asyncio.shield(future)
        # Another process owns the delivery: poll the shared cache for its reply.
        while (reply := await self.cache.get(self.keys.reply(key))) is None:  # noqa: ASYNC110
            await asyncio.sleep(self.poll_interval)
        return reply


class Intake:
    """Runs one parsed callback through dedupe, dispatch, budget and recording."""

    def __init__(
        self,
        services: Services,
        dispatcher: Dispatcher,
        deduper: Deduper,
        recorder: InboundRecorder,
        budget: ReplyBudget,
        late_hook: LateReplyHook,
        metrics: Metrics,
    ) -> None:
        self.services = services
        self.dispatcher = dispatcher
        self.deduper = deduper
        self.recorder = recorder
        self.budget = budget
        self.late_hook = late_hook
        self.metrics = metrics
        self._background: set[asyncio.Task[Any]] = set()
        # the chain's sender gate, whose first cache step rides on the dedupe claim
        self.gate = next(
            (mw for mw in dispatcher.middlewares if isinstance(mw, SenderGateMiddleware)), None
        )

    async def handle(self, inbound: Inbound) -> str:
        """The plaintext reply for this delivery (XML, or ``success``)."""
        key = inbound.dedupe_key
        gate = self.gate.gate_for(inbound, self.services) if self.gate is not None else None
        try:
            if gate is None:
                admission = None
                claimed = await self.deduper.claim(key)
            else:  # the claim and the sender gate's first step: one round trip
                admission = await self.deduper.claim_admit(key, gate)
                claimed = admission is not None
        except CacheError as exc:
            log.warning("dedupe claim failed: %s", exc, extra={"event_id": key})
            self.metrics.callbacks.labels(inbound.platform, inbound.kind, "cache_error").inc()
            return SUCCESS
        if not claimed:
            self.metrics.dedupe_hits.labels(inbound.platform).inc()
            return await self.deduper.reply_for(key, self.budget)
        plain = SUCCESS
        # The sender gate leaves the sender's lock to us: released with the reply below.
        trace = Trace(hand_lock=True, admission=admission)
        try:
            task = asyncio.create_task(self._process(inbound, trace))
            # Let the task run its first step: most handlers finish without suspending, and
            # then no timer is needed at all.
            await asyncio.sleep(0)
            if task.done() or await self.budget.wait(task):
                plain = self._render(inbound, task.result())
            else:
                trace.late = True
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        finally:
            # From here on a late handler's gate releases its own lock; one that already
            # left it to us (the handler finished) has it released with the reply.
            trace.hand_lock = False
            held, trace.held = trace.held, None
            unused, trace.admission = trace.admission, None
            if unused is not None and unused.locked:  # the gate never ran: release its lock
                held = unused.held
            await self.deduper.finish(key, plain, held)
        return plain

    async def replay(self, inbound: Inbound) -> Reply:
        """Dispatch again under the original key, bypassing dedupe (``events replay``)."""
        trace = Trace()
        return await self.dispatcher.dispatch(inbound, self._ctx(inbound, trace))

    async def drain(self, seconds: float = 10.0) -> None:
        """Wait for late handlers (shutdown)."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=seconds)

    def _ctx(self, inbound: Inbound, trace: Trace) -> Ctx:
        return Ctx(
            inbound=inbound, services=self.services, now=self.services.clock.now(), trace=trace
        )

    async def _process(self, inbound: Inbound, trace: Trace) -> Reply:
        started = time.perf_counter()
        try:
            reply = await self.dispatcher.dispatch(inbound, self._ctx(inbound, trace))
        except Exception:
            # recorded all the same: a crashed handler is an event too (outcome error)
            trace.outcome = "error"
            self._record(inbound, trace, time.perf_counter() - started)
            raise
        elapsed = time.perf_counter() - started
        if trace.late:
            await self._deliver_late(inbound, reply, trace)
        elif reply is NO_REPLY and trace.outcome == "replied":
            trace.outcome = "no_reply"
        self._record(inbound, trace, elapsed)
        return reply

    async def _deliver_late(self, inbound: Inbound, reply: Reply, trace: Trace) -> None:
        trace.outcome = "late"
        self.metrics.late_replies.labels(inbound.platform).inc()
        if reply is NO_REPLY:
            return
        try:
            await self.late_hook(inbound, reply)
        except Exception:
            trace.outcome = "late_failed"
            log.exception(
                "late reply could not be handed on", extra={"event_id": inbound.dedupe_key}
            )

    def _record(self, inbound: Inbound, trace: Trace, elapsed: float) -> None:
        self.metrics.callback_done(inbound.platform, inbound.kind, trace.outcome, elapsed)
        self.recorder.add(
            InboundRecord(
                dedupe_key=inbound.dedupe_key,
                platform=inbound.platform,
                account=inbound.account,
                kind=inbound.kind,
                sender=inbound.sender,
                member_id=trace.member_id,
                outcome=trace.outcome,
                handler_ms=int(elapsed * 1000),
                payload=inbound.plaintext,
                received_at=datetime.fromtimestamp(self.services.wall.time(), UTC),
            )
        )
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "callback handled",
                extra={
                    "event_id": inbound.dedupe_key,
                    "kind": inbound.kind,
                    "outcome": trace.outcome,
                },
            )

    def _render(self, inbound: Inbound, reply: Reply) -> str:
        now = int(self.services.wall.time())
        return render_reply(reply, inbound.sender, inbound.recipient, now)

    async def close(self) -> None:
        """Drain late handlers, then cancel any that still run."""
        await self.drain()
        for task in list(self._background):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
