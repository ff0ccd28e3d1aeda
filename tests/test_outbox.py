"""The outbox: late replies end to end, outcomes per error, at-most-once, two senders."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from wechatpy.messages import TextMessage

from bot.appkeys import SENDER
from bot.context import Ctx, Services
from bot.outbox.sender import LEASE, Sender
from bot.replies import Reply, TextReply
from bot.routing import Router
from bot.wechat.wecom_events import AgentText
from storage.models import OutboxMessage
from storage.repos import outbox
from tests.conftest import OA_APPID, AppMaker, FakeServer
from tests.fakes import FakeWall, ManualBudget
from tests.helpers import oa_text, post_oa, post_wecom


def _slow_router(release: asyncio.Event) -> Router:
    router = Router("slow")

    @router.on((TextMessage, AgentText))
    async def slow(event: Any, ctx: Ctx) -> Reply:
        await release.wait()
        return TextReply(f"late answer to {event.content}")

    return router


async def _wait_for_row(key: str) -> OutboxMessage:
    for _ in range(200):
        row = await OutboxMessage.get_or_none(idempotency_key=key)
        if row is not None:
            return row
        await asyncio.sleep(0.005)
    raise AssertionError(f"no outbox row {key}")


async def test_late_oa_reply_goes_out_as_a_customer_service_message(
    make_client: AppMaker,
    fake_settings: Any,
    fake: FakeServer,
    wall: FakeWall,
    budget: ManualBudget,
) -> None:
    release = asyncio.Event()
    client = await make_client(fake_settings, routers=(_slow_router(release),), late_hook=None)
    fake.platform.interaction(appid=OA_APPID, openid="oMember1", kind="message")
    post = asyncio.create_task(
        post_oa(client, fake_settings, oa_text("慢", msg_id=31), timestamp=int(wall.now))
    )
    await budget.waiting()
    budget.fire()
    assert await (await post).text() == "success"
    release.set()
    row = await _wait_for_row("late:oa:brand:msg:31")
    assert (row.channel, row.recipient, row.status) == ("oa_cs", "oMember1", "pending")
    await client.app[SENDER].drain()
    await row.refresh_from_db()
    assert row.status == "sent"
    assert [d.text for d in fake.platform.messages(openid="oMember1")] == ["late answer to 慢"]


async def test_late_wecom_reply_goes_out_as_an_agent_message(
    make_client: AppMaker,
    fake_settings: Any,
    fake: FakeServer,
    wall: FakeWall,
    budget: ManualBudget,
) -> None:
    from tests.conftest import read_payload

    release = asyncio.Event()
    client = await make_client(fake_settings, routers=(_slow_router(release),), late_hook=None)
    text = read_payload("wecom_text.xml").replace("fromUser", "zhangsan")
    post = asyncio.create_task(post_wecom(client, fake_settings, text, timestamp=int(wall.now)))
    await budget.waiting()
    budget.fire()
    assert await (await post).text() == "success"
    release.set()
    row = await _wait_for_row("late:wecom:wx5823bf96d3bd56c7:msg:1234567890123456")
    await client.app[SENDER].drain()
    await row.refresh_from_db()
    assert (row.channel, row.status) == ("wecom_agent", "sent")
    assert fake.platform.messages(userid="zhangsan")[-1].text == "late answer to this is a test"


async def _enqueue(services: Services, key: str, openid: str = "oUser1") -> OutboxMessage:
    message = outbox.NewMessage(key, "oa_cs", "brand", openid, {"text": key}, "test")
    return await outbox.enqueue(message, services.clock.now())


async def test_enqueue_is_idempotent(services: Services) -> None:
    first = await _enqueue(services, "k1")
    second = await _enqueue(services, "k1")
    assert first.id == second.id
    assert await OutboxMessage.all().count() == 1


async def test_outcomes_sent_failed_quota_unknown(services: Services, fake: FakeServer) -> None:
    fake.platform.interaction(appid=OA_APPID, openid="oUser1", kind="message")
    sender = Sender(services.clients, services.clock)
    ok = await _enqueue(services, "ok")
    closed = await _enqueue(services, "closed", openid="oUser2")  # no window: 45015
    await sender.drain()
    fake.platform.fail(platform="oa", api="cgi-bin/message/custom/send", errcode=45009)
    quota = await _enqueue(services, "quota")
    await sender.drain()
    statuses = {r.idempotency_key: (r.status, r.reason) for r in await OutboxMessage.all()}
    assert statuses[ok.idempotency_key] == ("sent", "")
    assert statuses[closed.idempotency_key][0] == "failed"
    assert statuses[closed.idempotency_key][1].startswith("45015")
    assert statuses[quota.idempotency_key] == ("pending", "quota: 45009")
    row = await OutboxMessage.get(idempotency_key="quota")
    assert row.due_at > services.clock.now()  # spilled to the next business day


async def test_a_row_left_sending_by_a_dead_sender_becomes_unknown(
    services: Services, fake: FakeServer, wall: FakeWall
) -> None:
    row = await _enqueue(services, "orphan")
    claimed = await outbox.claim("dead-worker", services.clock.now(), LEASE, 10)
    assert await outbox.start_sending(claimed[0], "dead-worker", services.clock.now(), LEASE)
    sender = Sender(services.clients, services.clock)
    await sender.run_once()
    await row.refresh_from_db()
    assert row.status == "sending"  # the lease has not lapsed yet
    wall.advance(LEASE.total_seconds() + 1)
    await sender.run_once()
    await row.refresh_from_db()
    assert row.status == "unknown"
    assert fake.platform.messages(openid="oUser1") == []  # never re-sent


async def test_a_claim_whose_lease_lapsed_while_pending_returns_to_the_pool(
    services: Services, fake: FakeServer, wall: FakeWall
) -> None:
    fake.platform.interaction(appid=OA_APPID, openid="oUser1", kind="message")
    await _enqueue(services, "reclaimed")
    await outbox.claim("dead-worker", services.clock.now(), LEASE, 10)
    sender = Sender(services.clients, services.clock)
    assert await sender.run_once() == 0
    wall.advance(LEASE.total_seconds() + 1)
    assert await sender.run_once() == 1
    assert [d.text for d in fake.platform.messages(openid="oUser1")] == ["reclaimed"]


@pytest.mark.postgres
async def test_two_senders_send_every_row_exactly_once(
    services: Services, fake: FakeServer
) -> None:
    for i in range(40):
        openid = f"oRace{i}"
        fake.platform.interaction(appid=OA_APPID, openid=openid, kind="message")
        await _enqueue(services, f"race-{i}", openid=openid)
    senders = [Sender(services.clients, services.clock, batch=5) for _ in range(2)]
    await asyncio.gather(*(s.drain() for s in senders))
    delivered = [d.to for d in fake.platform.world.deliveries]
    assert sorted(delivered) == sorted(f"oRace{i}" for i in range(40))
    assert await OutboxMessage.filter(status="sent").count() == 40


async def test_a_row_due_later_is_not_claimed_early(services: Services, wall: FakeWall) -> None:
    from datetime import timedelta

    # Business time is +08:00; SQLite compares stored text, so an unconverted bound would
    # make this row look due eight hours early.
    message = outbox.NewMessage("later", "oa_cs", "brand", "oUser1", {"text": "x"}, "test")
    await outbox.enqueue(message, services.clock.now() + timedelta(hours=1))
    assert await outbox.claim("w", services.clock.now(), LEASE, 10) == []
    wall.advance(3601)
    assert len(await outbox.claim("w", services.clock.now(), LEASE, 10)) == 1
