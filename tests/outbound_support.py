"""Helpers for the outbound engine's tests: rows, senders, and the fake's recorded calls."""

from __future__ import annotations

from collections import Counter
from typing import Any

from bot.config_outbound import OutboundSettings
from bot.context import Services
from bot.outbox.sender import Sender
from storage.models import OutboxMessage
from storage.repos import outbox
from tests.conftest import OA_APPID, FakeServer
from tests.fakes import FakeWall

CUSTOM = "cgi-bin/message/custom/send"


def sender(services: Services, **settings: Any) -> Sender:
    """A sender on these services with ``[outbound]`` settings overridden."""
    return Sender(services.clients, services.clock, settings=OutboundSettings(**settings))


async def customer_service_rows(services: Services, fake: FakeServer, count: int) -> list[str]:
    """``count`` customer-service rows to members whose windows are open; their openids."""
    openids = [f"oOut{i}" for i in range(count)]
    for openid in openids:
        fake.platform.interaction(appid=OA_APPID, openid=openid, kind="message")
        message = outbox.NewMessage(f"out:{openid}", "oa_cs", "brand", openid, {"text": "hi"}, "t")
        await outbox.enqueue(message, services.clock.now())
    return openids


def calls_per_recipient(fake: FakeServer, api: str = CUSTOM) -> Counter[str]:
    """How many calls of ``api`` the fake received per recipient (any answer)."""
    return Counter(str(c.body["touser"]) for c in fake.platform.calls("oa", api))


def accepted_per_recipient(fake: FakeServer, api: str = CUSTOM) -> Counter[str]:
    """How many calls of ``api`` the fake answered errcode 0, per recipient."""
    calls = fake.platform.calls("oa", api)
    return Counter(str(c.body["touser"]) for c in calls if c.errcode == 0)


async def drain_until_settled(
    send: Sender, wall: FakeWall, step: float = 1.0, rounds: int = 200
) -> None:
    """Drain, moving the wall clock on, until no row is pending any more."""
    for _ in range(rounds):
        await send.drain()
        if not await OutboxMessage.filter(status="pending").exists():
            return
        wall.advance(step)
    raise AssertionError("rows still pending")


async def statuses() -> Counter[str]:
    """Rows per status."""
    return Counter(await OutboxMessage.all().values_list("status", flat=True))
