"""Broadcasts: content rules, state machine, expected reach, skipped rows, the report."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.context import Services
from bot.services.broadcast_content import PER_MEMBER, BroadcastError
from bot.services.broadcast_sql import (
    MASS_LIMIT,
    NO_STAFF,
    NO_WINDOW,
    OPTED_OUT,
    UNFOLLOWED,
    Target,
    receive_limit,
    receive_window,
)
from bot.services.broadcasts import BroadcastService, BroadcastStateError
from bot.services.marketing import MarketingPolicy
from bot.templating import Renderer
from sop.sql import Sql, in_list, sql
from storage.models import AuditLog, Broadcast, Identity, Member, OutboxMessage
from storage.repos import outbox
from tests.broadcast_support import ACTOR, gold, members, relation, service
from tests.conftest import FakeServer
from tests.fakes import FakeWall
from tests.outbound_support import sender


@pytest.fixture(autouse=True)
def _daytime(wall: FakeWall) -> None:
    """10:13 in Shanghai: marketing is held in the quiet hours (22:00–08:00), and the
    suite's pinned time (06:13 there) falls inside them."""
    wall.now += 4 * 3600


PROMO = {"variables": {"headline": "双十一", "body": "8 折"}}
OFFER = {"variables": {"headline": "本周 8 折"}}


async def promo(services: Services, channel: str = "oa_cs", **kw: object) -> int:
    """A marketing broadcast of broadcast_promo on ``channel``; its id."""
    made = await service(services).create(
        "双十一",
        channel,
        actor=ACTOR,
        template="broadcast_promo",
        content=PROMO,
        account="brand",
        **kw,  # type: ignore[arg-type]
    )
    return int(made.id)


def test_every_marketing_broadcast_template_carries_the_opt_out_hint() -> None:
    renderer = Renderer()
    names = [n for n in renderer.marketing_names() if n.startswith("broadcast_")]
    assert "broadcast_promo" in names
    for name in names:
        assert renderer.variables(name) >= {"headline"}
        rendered = renderer.render(name, headline="h", body="b", **dict.fromkeys(PER_MEMBER, "x"))
        assert rendered.endswith(renderer.opt_out_hint())


@pytest.mark.parametrize("channel", ["oa_mass", "wecom_customer"])
async def test_per_member_variables_are_refused_where_one_content_goes_to_everyone(
    services: Services, channel: str
) -> None:
    with pytest.raises(BroadcastError, match="per-member variables code, member_name"):
        await service(services).create(
            "offer",
            channel,
            actor=ACTOR,
            template="broadcast_member_offer",
            content=OFFER,
            account="brand",
        )
    assert not await Broadcast.exists()


async def test_per_member_variables_render_per_recipient_on_customer_service(
    services: Services,
) -> None:
    (member_id, openid), *_ = await members(services, 2)
    made = await service(services).create(
        "offer",
        "oa_cs",
        actor=ACTOR,
        template="broadcast_member_offer",
        content=OFFER,
        account="brand",
    )
    await service(services).start(int(made.id), gold())
    row = await OutboxMessage.get(recipient=openid)
    code = (await Member.get(id=member_id)).code
    assert row.payload["text"].startswith("会员0，本周 8 折")
    assert code in row.payload["text"]
    assert row.payload["text"].endswith(Renderer().opt_out_hint())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"template": "", "content": {"text": "大促"}}, "must use a marketing template"),
        ({"template": "welcome", "content": {}}, "needs a marketing template"),
        ({"template": "broadcast_promo", "content": {}}, "needs variables body, headline"),
        ({"template": "nope", "content": {}}, "no template named"),
        ({"template": "broadcast_promo", "content": PROMO, "account": "x"}, "no Official Account"),
    ],
)
async def test_content_rules(services: Services, kwargs: dict[str, object], message: str) -> None:
    values = {"account": "brand", **kwargs}
    with pytest.raises(BroadcastError, match=message):
        await service(services).create("x", "oa_cs", actor=ACTOR, **values)  # type: ignore[arg-type]


async def test_template_messages_carry_service_notices_only(services: Services) -> None:
    body = {"template_id": "TPL", "data": {"first": {"value": "x"}}}
    with pytest.raises(BroadcastError, match="service notices only"):
        await service(services).create(
            "t", "oa_template", actor=ACTOR, content=body, account="brand"
        )
    with pytest.raises(BroadcastError, match="verified service account"):
        await service(services).create(
            "t", "oa_template", actor=ACTOR, content=body, account="compat", kind="service"
        )
    made = await service(services).create(
        "t", "oa_template", actor=ACTOR, content=body, account="brand", kind="service"
    )
    assert made.state == "draft"


async def test_state_machine_refuses_illegal_changes_and_audits_each_change(
    services: Services,
) -> None:
    await members(services, 1)
    bc = service(services)
    broadcast_id = await promo(services)
    with pytest.raises(BroadcastStateError, match=f"broadcast {broadcast_id} is draft: pause"):
        await bc.pause(broadcast_id, actor=ACTOR)
    with pytest.raises(BroadcastStateError, match="resume needs paused"):
        await bc.resume(broadcast_id, actor=ACTOR)
    await bc.schedule(broadcast_id, services.clock.now() + timedelta(hours=1), actor=ACTOR)
    await bc.cancel(broadcast_id, actor="boss")
    with pytest.raises(BroadcastStateError, match="is cancelled: start needs draft or scheduled"):
        await bc.start(broadcast_id, gold())
    with pytest.raises(BroadcastStateError, match="is cancelled: cancel"):
        await bc.cancel(broadcast_id, actor=ACTOR)
    audit = await AuditLog.filter(target=f"broadcast:{broadcast_id}").order_by("id")
    assert [(a.action, a.actor) for a in audit] == [
        ("broadcast.create", ACTOR),
        ("broadcast.scheduled", ACTOR),
        ("broadcast.cancelled", "boss"),
    ]


async def test_start_due_starts_scheduled_broadcasts_whose_time_came(services: Services) -> None:
    await members(services, 3)
    bc = service(services)
    bc.audience_for = lambda b: gold()
    now = services.clock.now()
    soon, later = await promo(services), await promo(services)
    await bc.schedule(soon, now + timedelta(minutes=5), actor=ACTOR)
    await bc.schedule(later, now + timedelta(hours=5), actor=ACTOR)
    assert await bc.start_due(now) == []
    assert await bc.start_due(now + timedelta(minutes=5)) == [soon]
    assert (await Broadcast.get(id=soon)).state == "sending"
    assert (await Broadcast.get(id=later)).state == "scheduled"
    assert await OutboxMessage.filter(group_key=f"bc:{soon}").count() == 3


async def test_customer_service_reach_lists_exclusions_and_skipped_rows(
    services: Services, fake: FakeServer
) -> None:
    open_ = await members(services, 3, fake=fake)
    closed = await members(services, 2, wrote=None)
    used = await members(services, 1, fake=fake)
    await Identity.filter(value=used[0][1]).update(cs_sent_since_message=5)
    gone = await members(services, 1, fake=fake)
    await Identity.filter(value=gone[0][1]).update(
        followed=False, unfollowed_at=services.clock.now()
    )
    opted = await members(services, 1, fake=fake, marketing_opt_out=True)
    await members(services, 2, fake=fake, tier="basic")  # not in the segment
    bc = service(services)
    broadcast_id = await promo(services)
    # the marketing base conditions leave opted-out members out of the audience already
    reach = await bc.preview(broadcast_id, gold())
    assert (reach.total, reach.reached) == (7, 3)
    assert reach.excluded == {NO_WINDOW: 3, UNFOLLOWED: 1}
    # an audience built on the service base still never reaches them with marketing
    reach = await bc.preview(broadcast_id, gold("service"))
    assert reach.excluded == {NO_WINDOW: 3, OPTED_OUT: 1, UNFOLLOWED: 1}
    await bc.start(broadcast_id, gold("service"))
    rows = await OutboxMessage.filter(group_key=f"bc:{broadcast_id}")
    assert Counter((r.status, r.reason) for r in rows) == {
        ("pending", ""): 3,
        ("skipped", NO_WINDOW): 3,
        ("skipped", OPTED_OUT): 1,
        ("skipped", UNFOLLOWED): 1,
    }
    assert {r.recipient for r in rows if r.status == "pending"} == {o for _, o in open_}
    assert opted[0][0] in {r.member_id for r in rows if r.status == "skipped"}
    no_window = {r.member_id for r in rows if r.reason == NO_WINDOW}
    assert no_window == {m for m, _ in closed + used}
    # each reached member's slot was claimed (counted like a single notice)
    counted = await Identity.filter(value__in=[o for _, o in open_]).values_list(
        "cs_sent_since_message", flat=True
    )
    assert counted == [1, 1, 1]
    await sender(services).drain()
    assert await sender(services).run_once() == 0  # skipped rows are never claimed
    report = await bc.report(broadcast_id)
    assert report["state"] == "done"
    assert report["channels"]["oa_cs"]["sent"]["count"] == 3
    assert report["channels"]["oa_cs"]["skipped"]["reasons"][NO_WINDOW] == 3
    assert report["reach"]["reached"] == 3


async def test_a_second_start_enqueues_nothing_twice(services: Services, fake: FakeServer) -> None:
    await members(services, 7, fake=fake)
    bc = service(services, batch=3)
    broadcast_id = await promo(services)
    await bc.start(broadcast_id, gold())
    with pytest.raises(BroadcastStateError):
        await bc.start(broadcast_id, gold())
    await Broadcast.filter(id=broadcast_id).update(reach={"enqueued": False})  # died mid-way
    await bc.continue_enqueue(broadcast_id, gold())
    assert await OutboxMessage.filter(group_key=f"bc:{broadcast_id}").count() == 7
    counted = await Identity.all().values_list("cs_sent_since_message", flat=True)
    assert set(counted) == {1}


async def test_mass_send_reach_counts_four_submitted_mass_rows_a_month(
    services: Services,
) -> None:
    (full, _), (once, _), *_ = await members(services, 3, wrote=None)
    now = services.clock.now()
    for i, member_id in enumerate([full] * 4 + [once]):
        row = outbox.NewMessage(
            f"old:{i}",
            "oa_mass",
            "brand",
            f"oBc{member_id}",
            {},
            "broadcast",
            member_id,
            "service",  # the mass limit counts every kind (the marketing cap would too)
            group_key="bc:old",
        )
        await outbox.insert(row, now, status="submitted")
    broadcast_id = await promo(services, "oa_mass")
    bc = service(services)
    reach = await bc.preview(broadcast_id, gold())
    assert (reach.total, reach.reached, reach.excluded) == (3, 2, {MASS_LIMIT: 1})
    await bc.start(broadcast_id, gold())
    rows = await OutboxMessage.filter(group_key=f"bc:{broadcast_id}").order_by("member_id")
    assert [(r.status, r.channel) for r in rows] == [
        ("skipped", "oa_mass"),
        ("pending", "oa_mass"),
        ("pending", "oa_mass"),
    ]
    assert rows[1].payload["text"].endswith(Renderer().opt_out_hint())


def with_receive_rule(services: Services, rule: str) -> BroadcastService:
    """A broadcast service whose corp has this WeCom receive rule (群发规则)."""
    wecom = services.settings.wecom
    assert wecom is not None
    settings = services.settings.model_copy(
        update={"wecom": wecom.model_copy(update={"receive_rule": rule})}
    )
    return BroadcastService(settings, services.clock, services.renderer)


def test_the_wecom_receive_window_follows_the_corps_rule() -> None:
    tz = ZoneInfo("Asia/Shanghai")
    now = datetime(2027, 2, 17, 10, 0, tzinfo=tz)  # a Wednesday in a 28-day February

    def window(rule: str) -> tuple[datetime, int, str]:
        t = Target(1, "wecom_customer", "marketing", "", "", "corp", now, tz, receive_rule=rule)
        since, cap = receive_window(t)
        return since, cap, receive_limit(t)

    assert window("month") == (
        datetime(2027, 2, 1, tzinfo=tz),
        28,
        "WeCom receive limit: 28 group messages this month already",
    )
    assert window("week")[:2] == (datetime(2027, 2, 15, tzinfo=tz), 7)
    assert window("day")[:2] == (datetime(2027, 2, 17, tzinfo=tz), 1)


async def test_wecom_rows_per_staff_with_the_per_customer_cap(services: Services) -> None:
    ids = [m for m, _ in await members(services, 4, wrote=None)]
    await relation(ids[0], "alice")
    await relation(ids[1], "bob")
    await relation(ids[2], "alice")
    await relation(ids[3], "bob", status="ended")
    bc = with_receive_rule(services, "day")  # one group message a customer a day
    earlier = await promo(services, "wecom_customer")
    await bc.start(earlier, join_ids([ids[2]]))
    broadcast_id = await promo(services, "wecom_customer")
    reach = await bc.preview(broadcast_id, gold())
    assert reach.excluded == {NO_STAFF: 1, "WeCom receive limit: 1 group messages today already": 1}
    await bc.start(broadcast_id, gold())
    rows = await OutboxMessage.filter(group_key=f"bc:{broadcast_id}").order_by("member_id")
    assert [(r.status, r.staff_userid, r.recipient) for r in rows] == [
        ("pending", "alice", f"wm{ids[0]}"),
        ("pending", "bob", f"wm{ids[1]}"),
        ("skipped", "alice", f"wm{ids[2]}"),
        ("skipped", "", ""),
    ]


def join_ids(ids: list[int]) -> Sql:
    """An audience of exactly these members."""
    return gold() + sql(" AND member.id IN ") + in_list(ids)


async def test_skipped_and_cancelled_rows_do_not_count_against_the_marketing_cap(
    services: Services,
) -> None:
    (member_id, _), *_ = await members(services, 1, wrote=None)
    broadcast_id = await promo(services)
    await service(services).start(broadcast_id, gold())
    row = await OutboxMessage.get(member_id=member_id)
    assert (row.status, row.reason) == ("skipped", NO_WINDOW)
    policy = MarketingPolicy(services.settings.sop, services.settings.tz)
    assert await policy.sent_recently(member_id, services.clock.now()) == 0
    await OutboxMessage.filter(id=row.id).update(status="pending")
    assert await policy.sent_recently(member_id, services.clock.now()) == 1


GOLD_RULE = {"all": [{"field": "tier", "in": ["gold"]}]}


async def test_a_segment_broadcast_compiles_its_rule_and_snapshots_it(services: Services) -> None:
    from storage.repos import segments as segment_repo

    await members(services, 3)
    await members(services, 2, tier="silver")
    now = services.clock.now()
    segment, _ = await segment_repo.save("gold", GOLD_RULE, description="", actor=ACTOR, now=now)
    bc = service(services)
    broadcast_id = await promo(services, segment_id=int(segment.id))
    assert (await bc.preview(broadcast_id)).total == 3
    reach = await bc.start(broadcast_id, actor=ACTOR)
    assert (reach.total, reach.reached) == (3, 3)
    # Editing the segment later does not change who the started broadcast is for.
    await segment_repo.save("gold", {"all": []}, description="", actor=ACTOR, now=now)
    started = await Broadcast.get(id=broadcast_id)
    assert started.rule == GOLD_RULE
    assert (await bc.preview(broadcast_id)).total == 3


async def test_a_bad_rule_fails_before_the_broadcast_starts(services: Services) -> None:
    bc = service(services)
    broadcast_id = await promo(services, rule={"all": [{"field": "nope"}]})
    with pytest.raises(BroadcastError, match="segment rule"):
        await bc.start(broadcast_id, actor=ACTOR)
    assert (await Broadcast.get(id=broadcast_id)).state == "draft"


async def test_marketing_cap_excludes_members_who_had_enough(services: Services) -> None:
    from bot.services.broadcast_sql import MARKETING_CAP

    ids = await members(services, 3)
    now = services.clock.now()
    capped = ids[0][0]
    for n in range(services.settings.sop.marketing_cap):
        await OutboxMessage.create(
            idempotency_key=f"earlier:{n}",
            channel="oa_cs",
            account="brand",
            recipient=ids[0][1],
            member_id=capped,
            source="sop",
            kind="marketing",
            payload={},
            status="sent",
            due_at=now,
        )
    bc = service(services)
    broadcast_id = await promo(services, rule=GOLD_RULE)
    reach = await bc.preview(broadcast_id)
    assert reach.excluded == {MARKETING_CAP: 1}
    assert reach.reached == 2
    # A service broadcast ignores the cap.
    notice = await bc.create(
        "通知",
        "oa_cs",
        actor=ACTOR,
        template="broadcast_notice",
        content=PROMO,
        account="brand",
        kind="service",
        rule=GOLD_RULE,
    )
    assert MARKETING_CAP not in (await bc.preview(int(notice.id))).excluded


async def test_the_scheduler_tick_starts_due_broadcasts(services: Services) -> None:
    from sop.leader import LocalLeadership
    from sop.schedule import SopScheduler

    await members(services, 2)
    bc = services.broadcasts
    broadcast_id = await promo(services, rule=GOLD_RULE)
    now = services.clock.now()
    await bc.schedule(broadcast_id, now + timedelta(minutes=1), actor=ACTOR)
    scheduler = SopScheduler(None, services, LocalLeadership(), [])
    assert await scheduler.keep_lease()
    assert (await scheduler.tick(now)).broadcasts == []
    assert (await scheduler.tick(now + timedelta(minutes=1))).broadcasts == [broadcast_id]
    assert (await Broadcast.get(id=broadcast_id)).state == "sending"
    assert await OutboxMessage.filter(group_key=f"bc:{broadcast_id}").count() == 2


async def test_an_enqueue_whose_process_died_is_finished_by_the_tick_once(
    services: Services,
) -> None:
    await members(services, 5)
    bc = service(services, batch=2)
    broadcast_id = await promo(services, rule=GOLD_RULE)
    await bc.begin(broadcast_id, actor=ACTOR)  # sending; the process dies before a page
    now = services.clock.now()
    assert await bc.adopt_enqueues(now + timedelta(minutes=1)) == []  # may still be alive
    assert await OutboxMessage.filter(group_key=f"bc:{broadcast_id}").count() == 0
    later = now + timedelta(minutes=6)
    assert await bc.start_due(later) == []
    assert await OutboxMessage.filter(group_key=f"bc:{broadcast_id}").count() == 5
    assert (await Broadcast.get(id=broadcast_id)).reach["enqueued"] is True
    assert await bc.adopt_enqueues(later + timedelta(minutes=10)) == []  # done: not again


async def test_a_live_enqueue_keeps_its_heartbeat(services: Services) -> None:
    await members(services, 5)
    bc = service(services, batch=2)
    broadcast_id = await promo(services, rule=GOLD_RULE)
    await bc.begin(broadcast_id, actor=ACTOR)
    stale = await Broadcast.get(id=broadcast_id)
    from storage.repos import broadcasts as repo

    await repo.touch(broadcast_id, services.clock.now() + timedelta(seconds=3))  # a page
    assert not await repo.take_beat(stale, services.clock.now())  # the adopter lost


@pytest.mark.parametrize("action", ["pause", "cancel"])
async def test_a_pause_or_cancel_between_a_pages_read_and_write_leaves_nothing_sendable(
    services: Services, action: str
) -> None:
    await members(services, 6)
    bc = service(services, batch=2)
    broadcast_id = await promo(services, rule=GOLD_RULE)
    real_beat = bc._beat
    calls = 0

    async def beat(broadcast_id: int) -> str:
        # The state the enqueue reads before its second page, then the manager acts
        # before that page is written.
        nonlocal calls
        calls += 1
        state = await real_beat(broadcast_id)
        if calls == 2:
            await getattr(bc, action)(broadcast_id, actor=ACTOR)
        return state

    bc._beat = beat  # type: ignore[method-assign]
    await bc.start(broadcast_id, actor=ACTOR)
    statuses = await OutboxMessage.filter(group_key=f"bc:{broadcast_id}").values_list(
        "status", flat=True
    )
    assert "pending" not in statuses
    if action == "pause":
        assert sorted(statuses) == ["held"] * 6  # the rest written held; resume sends all
        assert await bc.resume(broadcast_id, actor=ACTOR) == 6
    else:
        assert sorted(statuses) == ["cancelled", "cancelled"]  # the first page only
