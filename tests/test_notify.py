"""The notify service's channel policy (DESIGN §5), counted in the database, end to end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.app import Overrides, build_services
from bot.appkeys import SENDER, SERVICES
from bot.clock import BusinessClock
from bot.config import Settings
from bot.context import Services
from bot.outbox.late import OutboxLateReplies
from bot.outbox.sender import Sender
from bot.replies import TextReply
from bot.services.notify import NotifyOutcome
from bot.wechat.inbound import Inbound
from storage import db
from storage.cache import Cache
from storage.keys import KeyBuilder
from storage.models import Identity, OutboxMessage
from storage.repos import members as members_repo
from tests.conftest import (
    OA_APPID,
    AppMaker,
    FakeServer,
    base_config,
    make_settings,
    started_services,
)
from tests.fakes import FakeWall
from tests.helpers import post_oa

COMPAT_APPID = "wxcompat00000001"  # the "compat" test account: a subscription account
VARS = {
    "tier": "银卡",
    "previous": "普卡",
    "upgraded": True,
    "benefits": ["积分 1.2 倍"],
    "next_evaluation": "2024-01-01",
}


@pytest.fixture
def notify_settings(database: str, fake: FakeServer) -> Settings:
    """Fake-platform settings with a template_id for the tier notice."""
    return make_settings(
        base_config(database),
        api=fake.api(),
        notify={"templates": {"tier_changed": "TPL_TIER"}},
    )


@pytest.fixture
async def with_template(
    notify_settings: Settings, wall: FakeWall, cache: Cache, keys: KeyBuilder
) -> AsyncIterator[Services]:
    """Services whose settings configure a template_id for tier_changed."""
    async with started_services(notify_settings, wall, cache, keys) as made:
        yield made


async def member_on(services: Services, openid: str, app: str = OA_APPID) -> int:
    """A member with an OA identity (known by their messages, no follow event seen)."""
    row = await members_repo.create_with_identity(
        "oa_openid", app, openid, now=services.clock.now()
    )
    return row.id


def message(services: Services, fake: FakeServer, member_id: int, openid: str) -> None:
    """The member writes to the account: our recorder (batched) and the platform see it."""
    identity = ("oa_openid", OA_APPID, openid)
    services.members.activity.touch(identity, member_id, services.clock.now(), message=True)
    fake.platform.interaction(appid=OA_APPID, openid=openid, kind="message")


async def subscribe(services: Services, fake: FakeServer, openid: str) -> None:
    """The member follows: the 60 s event window opens on both sides."""
    await members_repo.set_followed("oa_openid", OA_APPID, openid, True, services.clock.now())
    fake.platform.interaction(appid=OA_APPID, openid=openid, kind="subscribe")


async def notice(services: Services, member_id: int, key: str, **options: Any) -> NotifyOutcome:
    """The tier notice under ``key``."""
    return await services.notify.notify(member_id, "tier_changed", VARS, key=key, **options)


async def test_a_message_opens_48_hours_for_five_and_the_platform_agrees(
    services: Services, fake: FakeServer, wall: FakeWall
) -> None:
    member_id = await member_on(services, "oM1")
    message(services, fake, member_id, "oM1")  # not flushed yet: notify flushes first
    wall.advance(47 * 3600)
    outcomes = [await notice(services, member_id, f"n{i}") for i in range(6)]
    assert [o.channel for o in outcomes] == ["oa_cs"] * 5 + ["unreachable"]
    assert "no template_id configured for tier_changed" in outcomes[5].reason
    identity = await Identity.get(member_id=member_id)
    assert identity.cs_sent_since_message == 5
    await Sender(services.clients, services.clock).drain()
    statuses = await OutboxMessage.filter(channel="oa_cs").values_list("status", flat=True)
    assert statuses == ["sent"] * 5  # no 45047: our count is the platform's
    assert len(fake.platform.messages(openid="oM1")) == 5
    assert "升级为银卡" in fake.platform.messages(openid="oM1")[0].text


async def test_a_new_message_resets_the_count(
    services: Services, fake: FakeServer, wall: FakeWall
) -> None:
    member_id = await member_on(services, "oM1")
    message(services, fake, member_id, "oM1")
    for i in range(5):
        assert (await notice(services, member_id, f"a{i}")).channel == "oa_cs"
    wall.advance(60)
    message(services, fake, member_id, "oM1")
    assert (await notice(services, member_id, "b")).channel == "oa_cs"


async def test_the_48_hour_window_closes(
    services: Services, fake: FakeServer, wall: FakeWall
) -> None:
    member_id = await member_on(services, "oM1")
    message(services, fake, member_id, "oM1")
    await services.members.activity.flush()
    wall.advance(48 * 3600 + 1)
    outcome = await notice(services, member_id, "late")
    assert outcome.channel == "unreachable"
    assert "no customer-service window" in outcome.reason


async def test_an_event_opens_60_seconds_for_three(
    services: Services, fake: FakeServer, wall: FakeWall
) -> None:
    member_id = await member_on(services, "oM2")
    await subscribe(services, fake, "oM2")
    wall.advance(30)
    outcomes = [await notice(services, member_id, f"e{i}") for i in range(4)]
    assert [o.channel for o in outcomes] == ["oa_cs"] * 3 + ["unreachable"]
    await Sender(services.clients, services.clock).drain()
    assert len(fake.platform.messages(openid="oM2")) == 3
    assert await OutboxMessage.filter(channel="oa_cs", status="sent").count() == 3
    other = await member_on(services, "oM3")
    await subscribe(services, fake, "oM3")
    wall.advance(61)
    assert (await notice(services, other, "too-late")).channel == "unreachable"


async def test_service_notices_fall_back_to_a_template_message(
    with_template: Services, fake: FakeServer, wall: FakeWall
) -> None:
    member_id = await member_on(with_template, "oM4")
    fake.platform.add_user(OA_APPID, "oM4")  # a follower the platform knows
    outcome = await notice(with_template, member_id, "tpl")
    assert (outcome.channel, outcome.account) == ("oa_template", "brand")
    await Sender(with_template.clients, with_template.clock).drain()
    await Sender(with_template.clients, with_template.clock).drain()
    delivered = fake.platform.messages(openid="oM4")
    assert [(d.channel, d.data["template_id"]) for d in delivered] == [("template", "TPL_TIER")]
    assert "银卡" in delivered[0].text
    row = await OutboxMessage.get(id=outcome.outbox_id)
    assert row.status == "sent"


async def test_marketing_never_goes_as_a_template_message(
    with_template: Services, fake: FakeServer
) -> None:
    member_id = await member_on(with_template, "oM5")
    outcome = await notice(with_template, member_id, "promo", kind="marketing")
    assert outcome.channel == "unreachable"
    assert "template messages never carry marketing" in outcome.reason
    assert await OutboxMessage.filter(channel="oa_template").count() == 0


async def test_a_subscription_account_sends_no_template_messages(
    with_template: Services,
) -> None:
    member_id = await member_on(with_template, "oSub", app=COMPAT_APPID)
    outcome = await notice(with_template, member_id, "sub")
    assert outcome.channel == "unreachable"
    assert "no verified service account" in outcome.reason


async def test_an_unverified_service_account_sends_no_template_messages(
    database: str, fake: FakeServer, wall: FakeWall, cache: Cache, keys: KeyBuilder
) -> None:
    raw = base_config(database)
    raw["accounts"]["brand"]["verified"] = False
    settings = make_settings(raw, api=fake.api(), notify={"templates": {"tier_changed": "T"}})
    made = build_services(settings, Overrides(wall=wall, cache=cache, keys=keys))
    member_id = await member_on(made, "oUnverified")
    outcome = await notice(made, member_id, "unverified")
    assert outcome.channel == "unreachable"
    assert "no verified service account" in outcome.reason


async def test_the_daily_template_quota_is_counted_in_the_outbox(
    database: str, fake: FakeServer, wall: FakeWall, cache: Cache, keys: KeyBuilder
) -> None:
    settings = make_settings(
        base_config(database),
        api=fake.api(),
        notify={"templates": {"tier_changed": "T"}, "template_daily_quota": 2},
    )
    clock = BusinessClock(settings.tz, allow_offset=True, source=wall.time)
    made = build_services(settings, Overrides(wall=wall, clock=clock, cache=cache, keys=keys))
    member_id = await member_on(made, "oQuota")
    channels = [(await notice(made, member_id, f"q{i}")).channel for i in range(3)]
    assert channels == ["oa_template", "oa_template", "unreachable"]
    wall.advance(86_400)  # the next business day
    assert (await notice(made, member_id, "tomorrow")).channel == "oa_template"


async def test_a_repeated_key_is_one_notice_and_claims_no_second_slot(
    services: Services, fake: FakeServer
) -> None:
    member_id = await member_on(services, "oM6")
    message(services, fake, member_id, "oM6")
    first = await notice(services, member_id, "same")
    again = await notice(services, member_id, "same")
    assert (again.outbox_id, again.channel, again.duplicate) == (first.outbox_id, "oa_cs", True)
    identity = await Identity.get(member_id=member_id)
    assert identity.cs_sent_since_message == 1
    await Sender(services.clients, services.clock).drain()
    assert len(fake.platform.messages(openid="oM6")) == 1


async def test_an_unfollowed_member_and_a_member_without_oa_are_unreachable(
    services: Services, fake: FakeServer, wall: FakeWall
) -> None:
    member_id = await member_on(services, "oGone")
    message(services, fake, member_id, "oGone")
    await services.members.activity.flush()
    await members_repo.set_followed("oa_openid", OA_APPID, "oGone", False, services.clock.now())
    gone = await notice(services, member_id, "gone")
    assert (gone.channel, gone.reason.split(";")[0]) == ("unreachable", "no followed OA identity")
    row = await OutboxMessage.get(id=gone.outbox_id)
    assert (row.status, row.channel) == ("unreachable", "none")
    await Sender(services.clients, services.clock).drain()
    await row.refresh_from_db()
    assert row.status == "unreachable"  # never claimed by the sender


async def test_a_menu_click_through_the_app_opens_the_event_window(
    make_client: AppMaker, fake_settings: Settings, fake: FakeServer, wall: FakeWall
) -> None:
    client = await make_client(fake_settings)
    services = client.app[SERVICES]
    click = (
        "<xml><ToUserName><![CDATA[gh_brand]]></ToUserName><FromUserName><![CDATA[oClick]]>"
        f"</FromUserName><CreateTime>{int(wall.now)}</CreateTime><MsgType><![CDATA[event]]>"
        "</MsgType><Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[TIER]]></EventKey></xml>"
    )
    await post_oa(client, fake_settings, click, timestamp=int(wall.now))
    fake.platform.interaction(appid=OA_APPID, openid="oClick", kind="click")
    member_id = (await Identity.get(value="oClick")).member_id
    wall.advance(20)
    outcomes = [await notice(services, member_id, f"c{i}") for i in range(4)]
    assert [o.channel for o in outcomes] == ["oa_cs"] * 3 + ["unreachable"]
    await client.app[SENDER].drain()
    assert len(fake.platform.messages(openid="oClick")) == 3
    assert await OutboxMessage.filter(channel="oa_cs", status="sent").count() == 3


@pytest.fixture
async def wide_pool(database: str) -> AsyncIterator[str]:
    """The same database behind a pool as wide as the race (asyncpg's default is 5)."""
    if db.is_sqlite(database):
        yield database  # one connection: transactions take turns
        return
    await db.close_db()
    await db.open_db(f"{database}{'&' if '?' in database else '?'}minsize=1&maxsize=30")
    yield database


async def test_concurrent_notices_claim_exactly_the_five_slots(
    wide_pool: str, services: Services, fake: FakeServer
) -> None:
    member_id = await member_on(services, "oRace")
    message(services, fake, member_id, "oRace")
    await services.members.activity.flush()
    outcomes = await asyncio.gather(*(notice(services, member_id, f"r{i}") for i in range(20)))
    assert sorted(o.channel for o in outcomes).count("oa_cs") == 5
    assert (await Identity.get(member_id=member_id)).cs_sent_since_message == 5
    await Sender(services.clients, services.clock).drain()
    assert await OutboxMessage.filter(channel="oa_cs", status="sent").count() == 5


async def test_a_late_reply_takes_one_of_the_five_customer_service_slots(
    services: Services, fake: FakeServer, wall: FakeWall
) -> None:
    member_id = await member_on(services, "oLate")
    message(services, fake, member_id, "oLate")
    hook = OutboxLateReplies(
        services.clock, lambda: None, services.settings, services.members.activity
    )
    inbound = Inbound(
        "oa", "brand", None, "text", "oLate", "gh_brand", int(wall.now), "oa:brand:msg:77", ""
    )
    await hook(inbound, TextReply("late"))
    await hook(inbound, TextReply("late"))  # a repeat of the same late reply counts nothing
    outcomes = [await notice(services, member_id, f"after-late-{i}") for i in range(5)]
    assert [o.channel for o in outcomes] == ["oa_cs"] * 4 + ["unreachable"]
    assert await OutboxMessage.filter(idempotency_key="late:oa:brand:msg:77").count() == 1
