"""Broadcasts through the outbound engine on the fake platform: bursts, kills, two senders,
pause, resume and cancel mid-run, WeCom tasks per staff."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from typing import Any

import pytest

from bot.config_outbound import OutboundSettings
from bot.context import Services
from bot.devtools.fake.state import Call
from bot.outbox.sender import LEASE, Sender
from bot.outbox.wecom_tasks import reconcile_awaiting
from bot.services.broadcasts import BroadcastService
from storage.models import OutboxMessage
from tests.broadcast_support import ACTOR, gold, members, relation, service
from tests.conftest import FakeServer
from tests.fakes import FakeWall
from tests.outbound_support import (
    CUSTOM,
    accepted_per_recipient,
    calls_per_recipient,
    drain_until_settled,
    sender,
    statuses,
)
from tests.test_outbound import KillingLimiter


@pytest.fixture(autouse=True)
def _daytime(wall: FakeWall) -> None:
    """10:13 in Shanghai: marketing is held in the quiet hours (22:00–08:00), and the
    suite's pinned time (06:13 there) falls inside them."""
    wall.now += 4 * 3600


PROMO = {"variables": {"headline": "双十一", "body": "8 折"}}
FINAL = {"sent", "failed", "unknown"}


async def started(services: Services, channel: str = "oa_cs", batch: int = 500) -> int:
    """A started marketing broadcast to the gold members; its id."""
    bc = service(services, batch=batch)
    made = await bc.create(
        "双十一", channel, actor=ACTOR, template="broadcast_promo", content=PROMO, account="brand"
    )
    await bc.start(int(made.id), gold())
    return int(made.id)


def on_call(fake: FakeServer, api: str, at: set[int], action: Any) -> None:
    """Run ``action()`` when the fake receives its n-th call of ``api``, for n in ``at``."""
    seen = 0

    def observe(call: Call) -> None:
        nonlocal seen
        if call.api != api:
            return
        seen += 1
        if seen in at:
            action()

    fake.platform.observers.append(observe)


async def test_ten_thousand_recipients_with_rate_bursts_are_each_sent_exactly_once(
    services: Services, fake: FakeServer, wall: FakeWall
) -> None:
    openids = [o for _, o in await members(services, 10_000, fake=fake)]
    broadcast_id = await started(services, batch=2_000)
    bursts = {1, 2_500, 5_000, 7_500}

    def burst() -> None:
        fake.platform.fail(platform="oa", api=CUSTOM, errcode=45011, times=40)

    on_call(fake, CUSTOM, bursts, burst)
    await drain_until_settled(sender(services, concurrency=64, batch=2_000), wall)
    assert await statuses() == {"sent": 10_000}
    assert accepted_per_recipient(fake) == dict.fromkeys(openids, 1)
    refused = [c for c in fake.platform.calls("oa", CUSTOM) if c.errcode == 45011]
    assert len(refused) == 4 * 40
    report = await service(services).report(broadcast_id)
    assert report["state"] == "done"
    assert report["channels"]["oa_cs"] == {"sent": {"count": 10_000, "reasons": {}}}


async def _kill_once(services: Services, fake: FakeServer, rng: random.Random) -> int:
    """Run a sender and kill it at a random point; the rows it left ``sending``."""
    limiter = KillingLimiter(rng.randint(1, 10) if rng.random() < 0.4 else 0)
    settings = OutboundSettings(concurrency=4, batch=10)
    send = Sender(services.clients, services.clock, settings=settings, limiter=limiter)
    task = asyncio.create_task(send.drain())
    limiter.task = task
    if limiter.n == 0:
        on_call(fake, CUSTOM, {rng.randint(1, 10)}, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    fake.platform.observers.clear()
    return await OutboxMessage.filter(status="sending").count()


async def test_a_sender_killed_at_random_points_calls_each_recipient_at_most_once(
    services: Services, fake: FakeServer, wall: FakeWall
) -> None:
    openids = [o for _, o in await members(services, 60, fake=fake)]
    broadcast_id = await started(services)
    rng = random.Random(9)
    left_sending = 0
    for _ in range(6):
        left_sending += await _kill_once(services, fake, rng)
        wall.advance(LEASE.total_seconds() + 1)
    await drain_until_settled(sender(services, concurrency=4), wall)
    counts = await statuses()
    assert set(counts) <= FINAL
    assert sum(counts.values()) == 60
    assert max(calls_per_recipient(fake).values()) == 1
    assert set(calls_per_recipient(fake)) <= set(openids)
    assert left_sending > 0
    assert counts["unknown"] == left_sending <= 6 * 4  # only the calls in flight at a kill
    report = await service(services).report(broadcast_id)
    assert report["state"] == "done"
    assert report["channels"]["oa_cs"]["unknown"]["count"] == left_sending


@pytest.mark.postgres
async def test_two_senders_share_a_broadcast_without_a_duplicate_call(
    services: Services, fake: FakeServer
) -> None:
    openids = [o for _, o in await members(services, 2_000, fake=fake)]
    await started(services)
    senders = [sender(services, concurrency=16, batch=100) for _ in range(2)]
    await asyncio.gather(*(s.drain() for s in senders))
    assert calls_per_recipient(fake) == dict.fromkeys(openids, 1)
    assert await statuses() == {"sent": 2_000}


async def test_pause_mid_run_stops_new_calls_resume_finishes(
    services: Services, fake: FakeServer, wall: FakeWall
) -> None:
    openids = [o for _, o in await members(services, 200, fake=fake)]
    broadcast_id = await started(services)
    bc = service(services)
    pausing: list[asyncio.Task[int]] = []
    on_call(
        fake, CUSTOM, {30}, lambda: pausing.append(asyncio.create_task(pause(bc, broadcast_id)))
    )
    send = sender(services, concurrency=4, batch=50)
    await send.drain()
    await pausing[0]
    made = len(fake.platform.calls("oa", CUSTOM))
    assert 30 <= made < 200
    counts = await statuses()
    assert counts["held"] == 200 - made
    assert (await bc.status(broadcast_id))["state"] == "paused"
    wall.advance(60)
    await send.drain()
    assert len(fake.platform.calls("oa", CUSTOM)) == made  # no new call while paused
    assert await bc.resume(broadcast_id, actor=ACTOR) == 200 - made
    await drain_until_settled(send, wall)
    assert accepted_per_recipient(fake) == dict.fromkeys(openids, 1)
    assert (await bc.status(broadcast_id))["state"] == "done"


async def pause(bc: BroadcastService, broadcast_id: int) -> int:
    """Pause the broadcast (from inside the fake, while calls are in flight)."""
    return await bc.pause(broadcast_id, actor=ACTOR)


async def test_cancel_mid_run_leaves_the_rest_cancelled_and_the_sent_sent(
    services: Services, fake: FakeServer
) -> None:
    await members(services, 120, fake=fake)
    broadcast_id = await started(services)
    bc = service(services)
    send = sender(services, concurrency=4, batch=40)
    await send.run_once()
    assert await bc.cancel(broadcast_id, actor=ACTOR) == 80
    await send.drain()
    assert await statuses() == {"sent": 40, "cancelled": 80}
    assert len(fake.platform.calls("oa", CUSTOM)) == 40
    report = await bc.report(broadcast_id)
    assert report["state"] == "cancelled"
    assert report["channels"]["oa_cs"]["cancelled"] == {"count": 80, "reasons": {"cancelled": 80}}


async def test_wecom_broadcast_one_task_per_staff_reported_per_staff(
    services: Services, fake: FakeServer
) -> None:
    ids = [m for m, _ in await members(services, 5, wrote=None)]
    for member_id, staff in zip(
        ids, ["zhangsan", "zhangsan", "zhangsan", "lisi", "lisi"], strict=True
    ):
        external = await relation(member_id, staff)
        fake.platform.add_customer(external, external, follow_user=[{"userid": staff}])
    broadcast_id = await started(services, "wecom_customer")
    await sender(services).drain()
    tasks = [c.body for c in fake.platform.calls("wecom", TASK) if c.errcode == 0]
    assert sorted((b["sender"], len(b["external_userid"])) for b in tasks) == [
        ("lisi", 2),
        ("zhangsan", 3),
    ]
    bc = service(services)
    assert (await bc.status(broadcast_id))["state"] == "sending"  # awaiting staff
    rows = await OutboxMessage.filter(group_key=f"bc:{broadcast_id}")
    refs = {r.staff_userid: r.external_ref for r in rows}
    fake.platform.confirm_groupmsg(refs["zhangsan"], "zhangsan")
    assert await reconcile_awaiting(services.clients, services.clock.now()) == 3
    report = await bc.report(broadcast_id)
    assert report["staff"] == {"lisi": {"awaiting_staff": 2}, "zhangsan": {"sent": 3}}
    fake.platform.confirm_groupmsg(refs["lisi"], "lisi")
    await reconcile_awaiting(services.clients, services.clock.now())
    assert (await bc.status(broadcast_id))["state"] == "done"
    assert Counter(
        await OutboxMessage.filter(channel="wecom_customer").values_list("status", flat=True)
    ) == {"sent": 5}


TASK = "cgi-bin/externalcontact/add_msg_template"
