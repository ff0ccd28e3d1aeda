"""Dispatching SOP touches: grants once, quiet hours, the cap, opt-out, channel choice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.config_sop import SopRule
from bot.context import Services
from sop.dispatch import TouchDispatcher
from storage.cache import Cache
from storage.keys import KeyBuilder
from storage.models import Coupon, Member, OutboxMessage, PointsEntry, Touchpoint
from storage.timeutil import utc
from tests.conftest import FakeServer
from tests.fakes import FakeWall
from tests.sop_support import (
    SHANGHAI,
    at,
    clicked,
    dispatching,
    member,
    rule,
    sop_settings,
    touch,
    wrote,
)

BIRTHDAY = rule(
    "birthday", "service", "birthday_today", template="sop_birthday", points=200, coupon="C10"
)
PROMO = rule("promo")  # marketing, message only
GIFT = rule("gift", "marketing", template="sop_member_day", points=10)
NOTICE = rule("notice", "service", "points_expiring", template="sop_points_expiry")
COMEBACK = rule("comeback", "marketing", "inactive", template="sop_reactivation", coupon="C10")
MORNING = datetime(2023, 11, 15, 10, 0, tzinfo=SHANGHAI)

Setup = tuple[Services, TouchDispatcher]


@pytest.fixture
async def dsp(
    database: str, fake: FakeServer, wall: FakeWall, cache: Cache, keys: KeyBuilder
) -> AsyncIterator[Setup]:
    """Services and a dispatcher of the test SOPs, the clock at 10:00 Shanghai."""
    at(wall, MORNING)
    rules: list[SopRule] = [BIRTHDAY, PROMO, GIFT, NOTICE, COMEBACK]
    async with dispatching(sop_settings(database, fake.api()), wall, cache, keys, *rules) as made:
        yield made


async def _row(row: Touchpoint) -> Touchpoint:
    return await Touchpoint.get(id=row.id)


async def test_grants_and_the_message_happen_once_when_dispatch_runs_twice(dsp: Setup) -> None:
    services, dispatcher = dsp
    member_id = await member(services, "oB1")
    wrote(services, member_id, "oB1", services.clock.now())
    row = await touch("birthday", member_id, MORNING, "2023")
    first = await dispatcher.dispatch_due(MORNING)
    second = await dispatcher.dispatch_due(MORNING + timedelta(minutes=5))
    assert first == {"oa_cs": 1}
    assert not second
    done = await _row(row)
    assert (done.status, done.outcome, done.granted, done.attempts) == ("done", "oa_cs", True, 1)
    assert (await Member.get(id=member_id)).points_balance == 200
    assert await PointsEntry.filter(idempotency_key=f"sop:{row.id}").count() == 1
    coupon = await Coupon.get(member_id=member_id)
    assert (coupon.source, coupon.value_fen, coupon.name) == ("sop", 1000, "10元无门槛券")
    assert coupon.valid_to == MORNING + timedelta(days=30)
    outbox = await OutboxMessage.get(id=done.outbox_id)
    assert outbox.idempotency_key == f"notify:sop:{row.id}"
    assert "200 积分" in outbox.payload["text"]
    assert coupon.code in outbox.payload["text"]
    assert "当前积分 200" in outbox.payload["text"]  # the balance after the grants


async def test_a_crash_before_the_row_closed_neither_grants_nor_sends_again(dsp: Setup) -> None:
    services, dispatcher = dsp
    member_id = await member(services, "oB2")
    wrote(services, member_id, "oB2", services.clock.now())
    row = await touch("birthday", member_id, MORNING, "2023")
    await dispatcher.dispatch_due(MORNING)
    # as if the dispatcher died after notify, before closing the row: its lease lapses
    await Touchpoint.filter(id=row.id).update(status="pending", outcome="", lease_until=None)
    again = await dispatcher.dispatch_due(MORNING + timedelta(minutes=1))
    assert again == {"oa_cs": 1}
    assert (await Member.get(id=member_id)).points_balance == 200
    assert await Coupon.filter(member_id=member_id).count() == 1
    assert await OutboxMessage.filter(member_id=member_id).count() == 1
    text = (await OutboxMessage.get(member_id=member_id)).payload["text"]
    coupon = await Coupon.get(member_id=member_id)
    assert coupon.code in text  # the retried message names the coupon granted before


async def test_a_lease_keeps_a_row_from_a_second_claim_until_it_lapses(dsp: Setup) -> None:
    services, dispatcher = dsp
    member_id = await member(services, "oL1")
    row = await touch("notice", member_id, MORNING)
    await Touchpoint.filter(id=row.id).update(lease_until=utc(MORNING + timedelta(seconds=30)))
    assert not await dispatcher.dispatch_due(MORNING + timedelta(seconds=10))
    lapsed = await dispatcher.dispatch_due(MORNING + timedelta(seconds=31))
    assert lapsed == {"unreachable": 1}
    assert (await _row(row)).attempts == 1


async def test_marketing_in_quiet_hours_waits_until_eight_on_a_utc_server_clock(
    dsp: Setup, wall: FakeWall
) -> None:
    services, dispatcher = dsp
    evening = datetime(2023, 11, 15, 22, 30, tzinfo=SHANGHAI)
    now = at(wall, evening)
    assert now.utcoffset() == timedelta(0)
    assert now.hour == 14
    member_id = await member(services, "oQ1")
    wrote(services, member_id, "oQ1", now - timedelta(minutes=5))
    row = await touch("promo", member_id, now)
    assert await dispatcher.dispatch_due(now) == {"deferred": 1}
    waiting = await _row(row)
    eight = datetime(2023, 11, 16, 8, 0, tzinfo=SHANGHAI)
    assert (waiting.status, waiting.outcome, waiting.due_at) == (
        "pending",
        "deferred: quiet hours",
        eight,
    )
    assert not await OutboxMessage.filter(member_id=member_id).exists()
    assert not await dispatcher.dispatch_due(at(wall, eight - timedelta(minutes=1)))
    assert await dispatcher.dispatch_due(at(wall, eight)) == {"oa_cs": 1}
    assert (await _row(row)).status == "done"


async def test_a_coupon_granted_before_a_quiet_hours_deferral_is_named_after_it(
    dsp: Setup, wall: FakeWall
) -> None:
    services, dispatcher = dsp
    now = at(wall, datetime(2023, 11, 15, 23, 0, tzinfo=SHANGHAI))
    member_id = await member(services, "oQ4")
    wrote(services, member_id, "oQ4", now - timedelta(minutes=5))
    row = await touch("comeback", member_id, now, occurrence="reactivation:2023-10-01:30")
    assert await dispatcher.dispatch_due(now) == {"deferred": 1}
    (code,) = await Coupon.filter(member_id=member_id).values_list("code", flat=True)
    assert (await _row(row)).outcome == f"granted coupon {code} | deferred: quiet hours"
    eight = datetime(2023, 11, 16, 8, 0, tzinfo=SHANGHAI)
    assert await dispatcher.dispatch_due(at(wall, eight)) == {"oa_cs": 1}
    (sent,) = await OutboxMessage.filter(member_id=member_id).values_list("payload", flat=True)
    assert "「10元无门槛券」" in sent["text"]  # shown only when the coupon is known
    assert await Coupon.filter(member_id=member_id).count() == 1


async def test_service_touches_are_not_held_by_quiet_hours(dsp: Setup, wall: FakeWall) -> None:
    services, dispatcher = dsp
    now = at(wall, datetime(2023, 11, 15, 23, 0, tzinfo=SHANGHAI))
    member_id = await member(services, "oQ2")
    wrote(services, member_id, "oQ2", now)
    await touch("notice", member_id, now)
    assert await dispatcher.dispatch_due(now) == {"oa_cs": 1}


async def test_in_quiet_hours_a_member_without_an_oa_window_is_not_held(
    dsp: Setup, wall: FakeWall
) -> None:
    services, dispatcher = dsp
    now = at(wall, datetime(2023, 11, 15, 23, 0, tzinfo=SHANGHAI))
    member_id = await member(services, "oQ3")  # no window: OA would not carry it anyway
    await touch("promo", member_id, now)
    assert await dispatcher.dispatch_due(now) == {"unreachable": 1}


async def test_the_third_marketing_touch_in_a_week_is_capped_but_still_grants(
    dsp: Setup, wall: FakeWall
) -> None:
    services, dispatcher = dsp
    member_id = await member(services, "oC1")
    wrote(services, member_id, "oC1", services.clock.now())
    await touch("promo", member_id, MORNING, "a")
    await touch("promo", member_id, MORNING, "b")
    assert await dispatcher.dispatch_due(MORNING) == {"oa_cs": 2}
    later = at(wall, MORNING + timedelta(days=3))
    wrote(services, member_id, "oC1", later)
    row = await touch("gift", member_id, later)
    assert await dispatcher.dispatch_due(later) == {"message_skipped: cap": 1}
    capped = await _row(row)
    assert (capped.status, capped.outcome, capped.granted) == (
        "done",
        "message_skipped: cap",
        True,
    )
    assert (await Member.get(id=member_id)).points_balance == 10
    assert await OutboxMessage.filter(member_id=member_id).count() == 2
    await touch("notice", member_id, later)  # service messages ignore the cap
    assert await dispatcher.dispatch_due(later) == {"oa_cs": 1}


async def test_unreachable_marketing_does_not_use_up_the_cap(dsp: Setup) -> None:
    services, dispatcher = dsp
    member_id = await member(services, "oC2")  # no window: every send is unreachable
    for key in ("a", "b", "c"):
        await touch("promo", member_id, MORNING, key)
    assert await dispatcher.dispatch_due(MORNING) == {"unreachable": 3}


async def test_opted_out_members_get_service_touches_only(dsp: Setup) -> None:
    services, dispatcher = dsp
    member_id = await member(services, "oO1")
    await Member.filter(id=member_id).update(marketing_opt_out=True)
    wrote(services, member_id, "oO1", services.clock.now())
    gift = await touch("gift", member_id, MORNING)
    notice = await touch("notice", member_id, MORNING)
    assert await dispatcher.dispatch_due(MORNING) == {"skipped: opted_out": 1, "oa_cs": 1}
    skipped = await _row(gift)
    assert (skipped.status, skipped.outcome, skipped.granted) == ("skipped", "opted_out", False)
    assert (await Member.get(id=member_id)).points_balance == 0
    assert (await _row(notice)).status == "done"


async def test_a_menu_click_two_minutes_ago_gets_no_customer_service_message(
    dsp: Setup, wall: FakeWall
) -> None:
    services, dispatcher = dsp
    member_id = await member(services, "oM1")
    clicked(services, member_id, "oM1", MORNING - timedelta(minutes=2))
    row = await touch("promo", member_id, MORNING)
    assert await dispatcher.dispatch_due(MORNING) == {"unreachable": 1}
    assert (await _row(row)).outcome.startswith("unreachable: no customer-service window")
    assert not await OutboxMessage.filter(member_id=member_id, channel="oa_cs").exists()
    fresh = await member(services, "oM2")  # a click 30 s ago still opens the window
    clicked(services, fresh, "oM2", MORNING - timedelta(seconds=30))
    await touch("promo", fresh, MORNING)
    assert await dispatcher.dispatch_due(MORNING) == {"oa_cs": 1}


async def test_merged_and_erased_members_are_skipped(dsp: Setup) -> None:
    services, dispatcher = dsp
    merged, erased = await member(services, "oG1"), await member(services, "oG2")
    await Member.filter(id=merged).update(status="merged", merged_into_id=erased)
    await Member.filter(id=erased).update(status="deleted", deleted_at=utc(MORNING))
    await touch("birthday", merged, MORNING, "2023")
    await touch("birthday", erased, MORNING, "2023")
    assert await dispatcher.dispatch_due(MORNING) == {"skipped: member_gone": 2}
    assert not await PointsEntry.exists()


async def test_delayed_rows_wait_for_their_due_time_and_scope_limits_a_pass(
    dsp: Setup, wall: FakeWall
) -> None:
    services, dispatcher = dsp
    member_id = await member(services, "oD1")
    later = await touch("notice", member_id, MORNING + timedelta(hours=2), "later")
    await touch("promo", member_id, MORNING, "now", run_id=7)
    assert await dispatcher.dispatch_due(MORNING, sop_id="notice") == {}
    assert await dispatcher.dispatch_due(MORNING, run_id=8) == {}
    assert await dispatcher.dispatch_due(MORNING, run_id=7) == {"unreachable": 1}
    assert (await _row(later)).status == "pending"
    seen: list[int] = []
    done = await dispatcher.dispatch_due(
        at(wall, MORNING + timedelta(hours=2)), progress=lambda t: seen.append(sum(t.values()))
    )
    assert done == {"unreachable": 1}
    assert seen == [1]


async def test_a_touch_of_a_template_less_sop_only_grants(dsp: Setup) -> None:
    services, _ = dsp
    silent = rule("silent", "service", "birthday_today", points=30, tag="生日会员")
    dispatcher = TouchDispatcher(services, {"silent": silent})
    member_id = await member(services, "oT1")
    row = await touch("silent", member_id, MORNING)
    assert await dispatcher.dispatch_due(MORNING) == {"granted": 1}
    assert (await _row(row)).outcome == "granted"
    assert (await Member.get(id=member_id)).points_balance == 30
    tags = await services_tags(member_id)
    assert tags == ["生日会员"]


async def services_tags(member_id: int) -> list[str]:
    """The member's local tag names."""
    from bot.services.wecom_tags import member_tags, tag_names

    return tag_names(await member_tags(member_id))


@pytest.mark.postgres
async def test_two_dispatchers_at_once_grant_and_send_each_touch_once(dsp: Setup) -> None:
    services, first = dsp
    second = TouchDispatcher(services, first.rules)
    members = [await member(services, f"oP{i}") for i in range(12)]
    rows = [await touch("birthday", m, MORNING, str(year)) for m in members for year in (1, 2)]
    tallies = await asyncio.gather(
        first.dispatch_due(MORNING, batch=5), second.dispatch_due(MORNING, batch=5)
    )
    assert sum(sum(t.values()) for t in tallies) == len(rows)
    assert all(t for t in tallies), "both dispatchers took part"
    assert await Touchpoint.filter(status="done", granted=True, attempts=1).count() == len(rows)
    assert await PointsEntry.filter(source="sop").count() == len(rows)
    assert await Coupon.filter(source="sop").count() == len(rows)
    assert await OutboxMessage.filter(source="notice").count() == len(rows)
    for member_id in members:
        assert (await Member.get(id=member_id)).points_balance == 400


async def test_wecom_rows_a_dead_pass_left_held_are_released_later(dsp: Setup) -> None:
    services, dispatcher = dsp
    member_id = await member(services, "oH1")
    row = await OutboxMessage.create(
        idempotency_key="notify:sop:dead",
        channel="wecom_customer",
        account="corp",
        recipient="wmDead",
        member_id=member_id,
        source="notice",
        group_key="sop:promo:77",
        staff_userid="zhangsan",
        payload={"text": "x"},
        status="held",
        due_at=utc(MORNING),
    )
    fresh = await OutboxMessage.create(
        idempotency_key="notify:sop:alive",
        channel="wecom_customer",
        account="corp",
        recipient="wmAlive",
        member_id=member_id,
        source="notice",
        group_key="sop:promo:78",
        staff_userid="zhangsan",
        payload={"text": "x"},
        status="held",
        due_at=utc(MORNING),
    )
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    await OutboxMessage.filter(id=row.id).update(created_at=long_ago)
    await dispatcher.dispatch_due(MORNING)
    assert (await OutboxMessage.get(id=row.id)).status == "pending"
    assert (await OutboxMessage.get(id=fresh.id)).status == "held"  # its pass may still run
