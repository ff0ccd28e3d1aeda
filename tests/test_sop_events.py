"""Member events: the hub, first_subscribe from a follow, tier_change from TierService,
and the event-triggered touches the dispatcher inserts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from bot.context import Services
from bot.services.events import EventHub
from sop.dispatch import TouchDispatcher
from storage.cache import Cache
from storage.keys import KeyBuilder
from storage.models import Member, Touchpoint
from tests.conftest import AppMaker, FakeServer, base_config, make_settings
from tests.fakes import FakeWall
from tests.sop_support import SHANGHAI, at, dispatching, member, rule, sop_settings, welcome_rule
from tests.test_binding import _member_of, _send, _services, _subscribe
from tests.test_members import _event

SUBSCRIBED = datetime(2023, 11, 15, 9, 30, tzinfo=SHANGHAI)
Seen = list[tuple[str, int, datetime]]


@pytest.fixture
async def dsp(
    database: str, fake: FakeServer, wall: FakeWall, cache: Cache, keys: KeyBuilder
) -> AsyncIterator[tuple[Services, TouchDispatcher]]:
    """Services and a dispatcher of the welcome series."""
    at(wall, SUBSCRIBED)
    settings = sop_settings(database, fake.api())
    async with dispatching(settings, wall, cache, keys, welcome_rule()) as made:
        yield made


async def test_a_subscriber_error_is_logged_and_the_others_still_run() -> None:
    hub, seen = EventHub(), []

    async def broken(event: str, member_id: int, when: datetime) -> None:
        raise RuntimeError("subscriber down")

    async def record(event: str, member_id: int, when: datetime) -> None:
        seen.append((event, member_id, when))

    hub.subscribe("first_subscribe", broken)
    hub.subscribe("first_subscribe", record)
    assert await hub.emit("first_subscribe", 7, SUBSCRIBED) == 1
    assert seen == [("first_subscribe", 7, SUBSCRIBED)]
    assert await hub.emit("tier_change", 7, SUBSCRIBED) == 0
    assert (hub.subscribers("first_subscribe"), hub.subscribers("tier_change")) == (2, 0)


async def test_the_welcome_series_is_created_once_and_sent_day_by_day(
    dsp: tuple[Services, TouchDispatcher], wall: FakeWall
) -> None:
    services, dispatcher = dsp
    member_id = await member(services, "oW1")
    assert await dispatcher.on_event("first_subscribe", member_id, SUBSCRIBED) == 3
    assert await dispatcher.on_event("first_subscribe", member_id, SUBSCRIBED) == 0
    later = SUBSCRIBED + timedelta(days=2)
    assert await dispatcher.on_event("first_subscribe", member_id, later) == 0  # no restart
    rows = await Touchpoint.filter(member_id=member_id).order_by("due_at")
    assert [(r.occurrence, r.due_at) for r in rows] == [
        ("first_subscribe:d1", SUBSCRIBED + timedelta(days=1)),
        ("first_subscribe:d3", SUBSCRIBED + timedelta(days=3)),
        ("first_subscribe:d7", SUBSCRIBED + timedelta(days=7)),
    ]
    assert await dispatcher.on_event("tier_change", member_id, SUBSCRIBED) == 0  # no such SOP
    assert not await dispatcher.dispatch_due(at(wall, SUBSCRIBED + timedelta(hours=23)))
    assert await dispatcher.dispatch_due(at(wall, SUBSCRIBED + timedelta(days=1))) == {
        "unreachable": 1
    }
    first = await Touchpoint.get(id=rows[0].id)
    assert first.status == "done"
    assert (await Touchpoint.get(id=rows[1].id)).status == "pending"


async def test_a_tier_change_touch_is_keyed_by_the_new_tier_and_the_day(
    dsp: tuple[Services, TouchDispatcher],
) -> None:
    services, _ = dsp
    changed = rule("tier_up", "service", "all", points=5).model_copy(
        update={"trigger": welcome_rule().trigger.model_copy(update={"event": "tier_change"})}
    )
    dispatcher = TouchDispatcher(services, {"tier_up": changed})
    member_id = await member(services, "oT1")
    await Member.filter(id=member_id).update(tier="silver")
    assert await dispatcher.on_event("tier_change", member_id, SUBSCRIBED) == 3
    assert await dispatcher.on_event("tier_change", member_id, SUBSCRIBED) == 0
    occurrences = await Touchpoint.filter(member_id=member_id).values_list("occurrence", flat=True)
    assert sorted(occurrences) == [f"tier_change:silver:2023-11-15:d{n}" for n in (1, 3, 7)]


async def test_only_a_follow_that_creates_the_member_emits_first_subscribe(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    seen: Seen = []

    async def record(event: str, member_id: int, when: datetime) -> None:
        seen.append((event, member_id, when))

    _services(client).events.subscribe("first_subscribe", record)
    await _subscribe(client, settings, wall, "oNew")
    await _send(client, settings, wall, lambda when: _event("oNew", "unsubscribe", when))
    await _subscribe(client, settings, wall, "oNew")
    new = await _member_of("oNew")
    assert [(e, m) for e, m, _ in seen] == [("first_subscribe", new.id)]
    assert seen[0][2].timestamp() == pytest.approx(wall.now - 2, abs=1)


async def test_tier_service_emits_tier_change_on_an_upgrade_and_a_drop(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    services = _services(client)
    seen: Seen = []

    async def record(event: str, member_id: int, when: datetime) -> None:
        seen.append((event, member_id, when))

    services.events.subscribe("tier_change", record)
    member_id = await member(services, "oTier")
    now = services.clock.now()
    await services.tiers.add_growth(member_id, 100, "g:small", now=now, reason="t", source="t")
    assert seen == []
    await services.tiers.add_growth(member_id, 3000, "g:big", now=now, reason="t", source="t")
    assert [(e, m) for e, m, _ in seen] == [("tier_change", member_id)]
    evaluation = datetime(2025, 1, 1, 0, 5, tzinfo=SHANGHAI)  # nothing earned in 2024
    await services.tiers.evaluate(evaluation)
    await services.tiers.evaluate(evaluation + timedelta(days=1))  # the same evaluation
    assert [(e, m) for e, m, _ in seen] == [("tier_change", member_id)] * 2


async def test_an_event_sop_touches_only_members_of_its_audience(
    database: str, fake: FakeServer, wall: FakeWall, cache: Cache, keys: KeyBuilder
) -> None:
    at(wall, SUBSCRIBED)
    gold_only = rule("gold_welcome", "service", "all", template="sop_welcome")
    gold_only = gold_only.model_copy(
        update={
            "trigger": gold_only.trigger.model_validate({"event": "tier_change"}),
            "audience": gold_only.audience.model_validate(
                {"name": "all", "params": {"tiers": ["gold"]}}
            ),
        }
    )
    settings = sop_settings(database, fake.api())
    async with dispatching(settings, wall, cache, keys, gold_only) as (services, dispatcher):
        silver = await member(services, "oTierS")
        gold = await member(services, "oTierG")
        await Member.filter(id=silver).update(tier="silver")
        await Member.filter(id=gold).update(tier="gold")
        assert await dispatcher.on_event("tier_change", silver, SUBSCRIBED) == 0
        assert await dispatcher.on_event("tier_change", gold, SUBSCRIBED) == 1
    assert await Touchpoint.filter(sop_id="gold_welcome").values_list("member_id", flat=True) == [
        gold
    ]
