"""The outbound engine (DESIGN §5): rate codes, quotas, unknown outcomes, kills, two senders."""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bot.app import Overrides, build_services
from bot.clock import BusinessClock
from bot.config_outbound import OutboundSettings
from bot.context import Services
from bot.devtools.fake.state import Call
from bot.outbox.policy import next_midnight
from bot.outbox.ratelimit import MemoryBuckets
from bot.outbox.sender import LEASE, Sender
from storage.models import OutboxMessage
from storage.repos import outbox
from tests.conftest import OA_APPID, FakeServer, base_config, make_settings
from tests.fakes import FakeWall
from tests.outbound_support import (
    CUSTOM,
    accepted_per_recipient,
    calls_per_recipient,
    customer_service_rows,
    drain_until_settled,
    sender,
    statuses,
)

FINAL = {"sent", "failed", "unknown"}


async def test_injected_rate_code_bursts_end_with_every_recipient_sent_once(
    services: Services, fake: FakeServer, wall: FakeWall
) -> None:
    openids = await customer_service_rows(services, fake, 12)
    fake.platform.fail(platform="oa", api=CUSTOM, errcode=45011, times=30)
    fake.platform.fail(platform="oa", api=CUSTOM, errcode=-1, times=5)
    send = sender(services, concurrency=4)
    await send.drain()
    rate_limited = await OutboxMessage.filter(status="pending").values_list("reason", flat=True)
    assert rate_limited
    assert set(rate_limited) <= {"rate: 45011", "rate: -1"}
    await drain_until_settled(send, wall)
    assert await statuses() == {"sent": 12}
    assert accepted_per_recipient(fake) == dict.fromkeys(openids, 1)
    # the client made one attempt per row and pass: 35 refused calls, 12 accepted
    assert sum(calls_per_recipient(fake).values()) == 12 + 35


async def test_the_fake_global_rate_limit_paces_the_sender_to_all_sent(
    services: Services, fake: FakeServer, wall: FakeWall
) -> None:
    openids = await customer_service_rows(services, fake, 20)
    fake.platform.rate_limit("oa", CUSTOM, per_second=3)
    await drain_until_settled(sender(services, concurrency=8), wall, step=0.5)
    assert await statuses() == {"sent": 20}
    assert accepted_per_recipient(fake) == dict.fromkeys(openids, 1)
    assert {c.errcode for c in fake.platform.calls("oa", CUSTOM)} == {0, 45011}


async def test_wecom_rate_codes_are_retried_too(
    services: Services, fake: FakeServer, wall: FakeWall
) -> None:
    message = outbox.NewMessage("agent", "wecom_agent", "corp", "zhangsan", {"text": "x"}, "t")
    await outbox.enqueue(message, services.clock.now())
    fake.platform.fail(platform="wecom", api="cgi-bin/message/send", errcode=45033, times=1)
    fake.platform.fail(platform="wecom", api="cgi-bin/message/send", errcode=45009, times=1)
    send = sender(services)
    await send.drain()
    row = await OutboxMessage.get(idempotency_key="agent")
    assert (row.status, row.reason) == ("pending", "rate: 45033")
    await drain_until_settled(send, wall)
    assert await statuses() == {"sent": 1}


async def test_a_daily_quota_spills_to_the_next_business_midnight(
    services: Services, fake: FakeServer
) -> None:
    await customer_service_rows(services, fake, 2)
    fake.platform.fail(platform="oa", api=CUSTOM, errcode=45009, times=1)
    await sender(services, concurrency=1).drain()
    rows = await OutboxMessage.filter(status="pending")
    assert len(rows) == 2  # the first hit the quota, the second found the API paused
    midnight = next_midnight(services.clock.now())
    assert {r.reason for r in rows} == {"quota: 45009"}
    assert {r.due_at for r in rows} == {midnight}
    assert len(fake.platform.calls("oa", CUSTOM)) == 1


async def test_template_quota_spills_with_reason_quota(
    services: Services, fake: FakeServer
) -> None:
    fake.platform.set_template_quota(OA_TEMPLATE_APP, 0)
    payload = {"template_id": "TPL", "data": {"first": {"value": "x"}}, "url": ""}
    message = outbox.NewMessage("tpl", "oa_template", "brand", "oUser1", payload, "t")
    await outbox.enqueue(message, services.clock.now())
    await sender(services).drain()
    row = await OutboxMessage.get(idempotency_key="tpl")
    assert (row.status, row.reason) == ("pending", "quota: 45009")
    assert row.due_at == next_midnight(services.clock.now())


OA_TEMPLATE_APP = "wx2c2769f8efd9abc2"


async def test_unknown_outcome_is_final_unless_the_channel_is_idempotent(
    fake: FakeServer, database: str, wall: FakeWall
) -> None:
    settings = make_settings(base_config(database), api={**fake.api(), "timeout_seconds": 0.05})
    clock = BusinessClock(settings.tz, allow_offset=True, source=wall.time)
    services = build_services(settings, Overrides(wall=wall, clock=clock, api_sleep=_none))
    await services.clients.start()
    try:
        await customer_service_rows(services, fake, 1)
        code = fake.platform.mint_welcome_code("zhangsan", "wmCust1")
        welcome = {"welcome_code": code, "text": "欢迎"}
        message = outbox.NewMessage("welcome", "wecom_welcome", "corp", "wmCust1", welcome, "t")
        await outbox.enqueue(message, services.clock.now())
        for platform, api in (("oa", CUSTOM), ("wecom", WELCOME)):
            fake.platform.fail(platform=platform, api=api, delay=0.2, times=1)
        send = Sender(services.clients, services.clock)
        await send.drain()
        cs = await OutboxMessage.get(idempotency_key="out:oOut0")
        assert cs.status == "unknown"  # not idempotent: at most once
        row = await OutboxMessage.get(idempotency_key="welcome")
        assert row.status == "pending"
        assert row.reason.startswith("retry:")
        wall.advance(2)
        await send.drain()
        await row.refresh_from_db()
        # one of the two calls delivered; the other is answered 41051, which counts as sent
        assert row.status == "sent"
        assert len(fake.platform.calls("wecom", WELCOME)) == 2
        assert len(fake.platform.calls("oa", CUSTOM)) == 1
    finally:
        await services.clients.close()


WELCOME = "cgi-bin/externalcontact/send_welcome_msg"


async def _none(seconds: float) -> None:
    return None


class KillingLimiter(MemoryBuckets):
    """Buckets that cancel the sender's task at the n-th token (a kill before a call)."""

    def __init__(self, n: int) -> None:
        super().__init__(OutboundSettings(), lambda: 0.0, _none)
        self.n = n
        self.task: asyncio.Task[None] | None = None

    async def acquire(self, platform: str, app_id: str, api: str) -> float:
        """Cancel the sender at the n-th token, else take one."""
        self.n -= 1
        if self.n == 0 and self.task is not None:
            self.task.cancel()
            await asyncio.sleep(0)
        return await super().acquire(platform, app_id, api)

    async def acquire_many(self, platform: str, app_id: str, api: str, count: int) -> float:
        """Cancel the sender if the n-th token is among these ``count``, else take them."""
        self.n -= count
        if self.n <= 0 < self.n + count and self.task is not None:
            self.task.cancel()
            await asyncio.sleep(0)
        return await super().acquire_many(platform, app_id, api, count)


async def _kill_once(services: Services, fake: FakeServer, rng: random.Random) -> int:
    """Run a sender and kill it at a random point; returns the rows it left ``sending``."""
    settings = OutboundSettings(concurrency=4, batch=8)
    limiter = KillingLimiter(rng.randint(1, 8) if rng.random() < 0.4 else 0)
    send = Sender(services.clients, services.clock, settings=settings, limiter=limiter)
    task = asyncio.create_task(send.drain())
    limiter.task = task
    target, seen = rng.randint(1, 8), 0

    def observe(call: Call) -> None:  # a kill while calls are in flight
        nonlocal seen
        seen += call.api == CUSTOM
        if seen == target:
            task.cancel()

    if limiter.n == 0:
        fake.platform.observers.append(observe)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        if observe in fake.platform.observers:
            fake.platform.observers.remove(observe)
    return await OutboxMessage.filter(status="sending").count()


async def test_a_sender_killed_at_five_random_points_calls_each_recipient_at_most_once(
    services: Services, fake: FakeServer, wall: FakeWall
) -> None:
    openids = await customer_service_rows(services, fake, 40)
    rng = random.Random(20261201)
    left_sending = 0
    for _ in range(5):
        left_sending += await _kill_once(services, fake, rng)
        wall.advance(LEASE.total_seconds() + 1)  # the dead sender's leases lapse
    await drain_until_settled(sender(services, concurrency=4), wall)
    counts = await statuses()
    assert set(counts) <= FINAL
    assert sum(counts.values()) == 40
    assert max(calls_per_recipient(fake).values()) == 1  # at most one call per recipient
    assert set(calls_per_recipient(fake)) <= set(openids)
    assert left_sending > 0  # some kills came while calls were in flight
    assert counts["unknown"] == left_sending <= 5 * 4  # only the calls in flight at a kill
    sent = await OutboxMessage.filter(status="sent").values_list("recipient", flat=True)
    assert all(accepted_per_recipient(fake)[r] == 1 for r in sent)


@pytest.mark.postgres
async def test_two_concurrent_senders_share_batches_without_a_duplicate_call(
    services: Services, fake: FakeServer, wall: FakeWall
) -> None:
    openids = await customer_service_rows(services, fake, 60)
    first, second = await asyncio.gather(
        outbox.claim("a", services.clock.now(), LEASE, 25),
        outbox.claim("b", services.clock.now(), LEASE, 25),
    )
    assert not {r.id for r in first} & {r.id for r in second}
    assert len(first) + len(second) == 50  # SKIP LOCKED: neither waited for the other
    await outbox.release_claims("a")
    await outbox.release_claims("b")
    senders = [sender(services, concurrency=8, batch=7) for _ in range(2)]
    await asyncio.gather(*(s.drain() for s in senders))
    assert calls_per_recipient(fake) == dict.fromkeys(openids, 1)
    assert await statuses() == {"sent": 60}


async def test_rows_claimed_by_a_live_sender_are_not_taken_by_another(
    services: Services, fake: FakeServer
) -> None:
    await customer_service_rows(services, fake, 3)
    await outbox.claim("other", services.clock.now(), LEASE, 10)
    assert await sender(services).run_once() == 0
    assert fake.platform.calls("oa", CUSTOM) == []
    await outbox.release_claims("other")
    assert await sender(services).run_once() == 3


async def test_marketing_rows_reaching_the_sender_in_quiet_hours_wait_until_eight(
    services: Services, fake: FakeServer, wall: FakeWall
) -> None:
    late = datetime(2027, 5, 20, 23, 10, tzinfo=ZoneInfo("Asia/Shanghai"))
    wall.now = late.timestamp()
    for openid, kind in (("oQuietM", "marketing"), ("oQuietS", "service")):
        fake.platform.interaction(appid=OA_APPID, openid=openid, kind="message")
        message = outbox.NewMessage(
            f"quiet:{openid}", "oa_cs", "brand", openid, {"text": "hi"}, "t", kind=kind
        )
        await outbox.enqueue(message, services.clock.now())
    await sender(services).drain()
    assert calls_per_recipient(fake) == {"oQuietS": 1}  # service notices are not held
    held = await OutboxMessage.get(idempotency_key="quiet:oQuietM")
    eight = datetime(2027, 5, 21, 8, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert (held.status, held.reason, held.due_at) == ("pending", "quiet hours", eight)
    wall.now = eight.timestamp()
    await sender(services).drain()
    assert calls_per_recipient(fake) == {"oQuietS": 1, "oQuietM": 1}
