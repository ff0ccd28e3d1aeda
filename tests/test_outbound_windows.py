"""The sender's windows: a failure while one is built, and windows no larger than the burst."""

from __future__ import annotations

import asyncio
from collections import Counter

from redis.exceptions import ConnectionError as RedisConnectionError

from bot.config_outbound import OutboundSettings
from bot.context import Services
from bot.outbox.batching import RowWrites
from bot.outbox.ratelimit import MemoryBuckets
from bot.outbox.sender import Sender
from storage.models import OutboxMessage
from tests.conftest import FakeServer
from tests.fakes import FakeWall
from tests.outbound_support import (
    CUSTOM,
    accepted_per_recipient,
    customer_service_rows,
    sender,
    statuses,
)


async def _none(seconds: float) -> None:
    return None


class FlakyLimiter(MemoryBuckets):
    """The bucket fails once (a Redis connection blip) at the n-th window's reservation."""

    def __init__(self, n: int) -> None:
        super().__init__(OutboundSettings(), lambda: 0.0, _none)
        self.n = n

    async def acquire_many(self, platform: str, app_id: str, api: str, count: int) -> float:
        """Fail the n-th reservation, take the others."""
        self.n -= 1
        if self.n == 0:
            raise RedisConnectionError("Connection reset by peer")
        return await super().acquire_many(platform, app_id, api, count)


class LostStartWrites(RowWrites):
    """The n-th window's start commits, then its answer is lost (the connection dropped)."""

    def __init__(self, writes: RowWrites, n: int) -> None:
        super().__init__(writes.worker, writes.lease, writes.now, 8)
        self.n = n

    async def start_all(self, row_ids: list[int]) -> set[int]:
        """Start the rows; the n-th time raise after the commit."""
        won = await super().start_all(row_ids)
        self.n -= 1
        if self.n == 0:
            raise ConnectionResetError("server closed the connection")
        return won


async def _unclaimed_pending() -> int:
    return await OutboxMessage.filter(status="pending", claimed_by="").count()


async def test_a_limiter_blip_leaves_its_window_pending_and_the_others_sent(
    services: Services, fake: FakeServer
) -> None:
    openids = await customer_service_rows(services, fake, 8)
    settings = OutboundSettings(concurrency=8, batch=8)  # windows of 2
    flaky = Sender(services.clients, services.clock, settings=settings, limiter=FlakyLimiter(2))
    assert await flaky.run_once() == 8
    # the other windows' calls went on; the failed window was never called, and its rows
    # are back in the pool at once (no lease to wait out), never unknown
    assert await statuses() == {"sent": 6, "pending": 2}
    assert await _unclaimed_pending() == 2
    assert len(fake.platform.calls("oa", CUSTOM)) == 6
    await sender(services, concurrency=8).drain()  # the wall clock has not moved
    assert await statuses() == {"sent": 8}
    assert accepted_per_recipient(fake) == dict.fromkeys(openids, 1)


async def test_a_start_whose_answer_was_lost_puts_its_rows_back_pending(
    services: Services, fake: FakeServer
) -> None:
    openids = await customer_service_rows(services, fake, 8)
    flaky = sender(services, concurrency=8, batch=8)
    flaky.writes = LostStartWrites(flaky.writes, 3)
    assert await flaky.run_once() == 8
    # the third window turned sending (committed) but no call followed: pending, not unknown
    assert await statuses() == {"sent": 6, "pending": 2}
    assert await _unclaimed_pending() == 2
    await sender(services, concurrency=8).drain()
    assert await statuses() == {"sent": 8}
    assert accepted_per_recipient(fake) == dict.fromkeys(openids, 1)


def test_the_burst_is_whole_tokens_of_one_second() -> None:
    settings = OutboundSettings(rates={f"oa:{CUSTOM}": 4, "oa:slow": 0.5, "oa:odd": 2.5})
    buckets = MemoryBuckets(settings, lambda: 0.0, _none)
    assert buckets.burst("oa", CUSTOM) == 4
    assert buckets.burst("oa", "slow") == 1
    assert buckets.burst("oa", "odd") == 2


async def test_windows_never_exceed_the_burst_of_a_slow_account(
    services: Services, fake: FakeServer, wall: FakeWall
) -> None:
    openids = await customer_service_rows(services, fake, 20)
    fake.platform.rate_limit("oa", CUSTOM, per_second=4)  # the platform's own limit

    async def sleep(seconds: float) -> None:
        """Virtual time: the calls already started are answered, then the wall (and the
        fake's clock) moves on by the wait."""
        while await OutboxMessage.filter(status="sending").exists():
            await asyncio.sleep(0)
        wall.advance(seconds)

    # a quarter of the concurrency would be windows of 10 on a bucket of 4
    settings = OutboundSettings(concurrency=40, batch=20, rates={f"oa:{CUSTOM}": 4})
    limiter = MemoryBuckets(settings, wall.time, sleep)
    send = Sender(services.clients, services.clock, settings=settings, limiter=limiter)
    assert await send.run_once() == 20
    calls = fake.platform.calls("oa", CUSTOM)
    assert [c.errcode for c in calls] == [0] * 20  # paced at 4/s: the platform never refused
    assert max(Counter(c.at for c in calls).values()) == 4  # at most the burst at once
    assert calls[-1].at - calls[0].at == 4.0  # and no slower: 16 more tokens at 4/s
    assert accepted_per_recipient(fake) == dict.fromkeys(openids, 1)


async def test_a_recipients_messages_go_out_one_pass_at_a_time_in_order(
    services: Services, fake: FakeServer
) -> None:
    from storage.repos import outbox
    from tests.conftest import OA_APPID

    fake.platform.interaction(appid=OA_APPID, openid="oChat", kind="message")
    now = services.clock.now()
    for n in range(3):  # e.g. "started", "50 %", "final report" queued within one pass
        message = outbox.NewMessage(f"chat:{n}", "oa_cs", "brand", "oChat", {"text": f"m{n}"}, "t")
        await outbox.enqueue(message, now)
    one = sender(services, concurrency=8)
    assert await one.run_once() == 3  # claimed all three, sent the first only
    assert await statuses() == {"sent": 1, "pending": 2}
    await one.drain()
    texts = [c.body["text"]["content"] for c in fake.platform.calls("oa", CUSTOM)]
    assert texts == ["m0", "m1", "m2"]
