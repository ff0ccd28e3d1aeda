"""Broadcasts to WeCom customer groups (wecom_group): reach, enqueue, tasks per owner,
reconciliation per chat id, the report per owner."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import pytest

from bot.clients.errors import ApiError
from bot.config import Settings
from bot.context import Services
from bot.devtools.fake.common import receive_period
from bot.devtools.fake.wecom_state import GroupChat
from bot.outbox.wecom_tasks import RESULTS, reconcile_awaiting
from bot.services.broadcast_content import BroadcastError
from bot.services.broadcast_groups import DISMISSED, NO_OWNER
from storage.models import Broadcast, OutboxMessage, Staff
from storage.models.wecom import CustomerGroup, GroupMember
from storage.repos import broadcasts as repo
from tests.broadcast_support import ACTOR, gold, members, service
from tests.conftest import FakeServer, base_config, make_settings
from tests.fakes import FakeWall
from tests.outbound_support import sender

TASK = "cgi-bin/externalcontact/add_msg_template"
PROMO = {"variables": {"headline": "双十一", "body": "8 折"}}
SENT_LONG_AGO = datetime(2020, 1, 1)


RULE, CAP = "week", 7  # the corp's receive rule here: 7 group messages a week
LIMIT = "WeCom receive limit: 7 group messages this week already"


@pytest.fixture
def fake_settings(database: str, fake: FakeServer) -> Settings:
    """The test settings with the corp's receive rule set to a week (WeCom's default is a
    month's days; a week keeps the numbers small)."""
    config = base_config(database)
    config["wecom"]["receive_rule"] = RULE
    fake.platform.corp().receive_rule = RULE
    return make_settings(config, api=fake.api())


@pytest.fixture(autouse=True)
def _daytime(wall: FakeWall) -> None:
    """10:13 in Shanghai (the suite's pinned 06:13 falls in the quiet hours)."""
    wall.now += 4 * 3600


async def staff(*userids: str, active: bool = True) -> None:
    """Local staff rows (owners the reach accepts when active)."""
    for userid in userids:
        await Staff.create(userid=userid, name=userid, active=active)


async def group(
    chat_id: str,
    owner: str,
    current: list[int],
    *,
    left: list[int] | None = None,
    status: str = "active",
    fake: FakeServer | None = None,
) -> CustomerGroup:
    """A synced customer group: ``current`` members in it, ``left`` ones gone; with
    ``fake`` the platform has the same group under the same owner."""
    now = datetime(2026, 1, 1)
    made = await CustomerGroup.create(
        chat_id=chat_id, name=chat_id, owner_userid=owner, status=status, updated_at=now
    )
    for member_id in current + (left or []):
        await GroupMember.create(
            group=made,
            userid=f"wm{member_id}",
            type=2,
            member_id=member_id,
            left_at=now if member_id in (left or []) else None,
            updated_at=now,
        )
    await GroupMember.create(group=made, userid=owner, type=1, updated_at=now)  # staff
    if fake is not None:
        corp = fake.platform.corp()
        corp.group_chats[chat_id] = GroupChat(chat_id, chat_id, owner, int(now.timestamp()))
    return made


async def earlier_row(chat_id: str, n: int, status: str, created_at: datetime) -> None:
    """A wecom_group row of another broadcast to ``chat_id``."""
    await OutboxMessage.create(
        idempotency_key=f"bc:9999:chat:{chat_id}:{n}",
        channel="wecom_group",
        account="corp",
        recipient=chat_id,
        source="broadcast",
        group_key=f"bc:{9000 + n}",
        staff_userid="zhangsan",
        payload={"text": "earlier"},
        status=status,
        due_at=created_at,
        created_at=created_at,
    )


async def broadcast(services: Services, **kw: object) -> int:
    """A marketing wecom_group broadcast of broadcast_promo; its id."""
    made = await service(services).create(
        "会员日", "wecom_group", actor=ACTOR, template="broadcast_promo", content=PROMO, **kw
    )  # type: ignore[arg-type]
    return int(made.id)


async def test_per_member_variables_are_refused_on_customer_groups(services: Services) -> None:
    with pytest.raises(BroadcastError, match="wecom_group sends one content to everyone"):
        await service(services).create(
            "offer",
            "wecom_group",
            actor=ACTOR,
            template="broadcast_member_offer",
            content={"variables": {"headline": "本周 8 折"}},
        )
    with pytest.raises(BroadcastError, match="marketing template"):
        await service(services).create("plain", "wecom_group", actor=ACTOR, content={"text": "hi"})
    assert not await Broadcast.exists()


async def _reach_world(services: Services) -> dict[str, int]:
    """Groups covering every exclusion; member ids by role."""
    (a, b, c, d), (silver,) = (
        [m for m, _ in await members(services, 4, wrote=None)],
        [m for m, _ in await members(services, 1, wrote=None, tier="silver")],
    )
    await staff("zhangsan", "lisi")
    await staff("wangwu", active=False)
    await group("wrReached1", "zhangsan", [a, b, silver])
    await group("wrReached2", "lisi", [b, c])  # b is in both: counted once
    await group("wrInactiveOwner", "wangwu", [a])
    await group("wrNoStaffRow", "ghost", [a])
    await group("wrDismissed", "zhangsan", [a], status="dismissed")
    await group("wrSilverOnly", "zhangsan", [silver])  # not the segment's
    await group("wrLeftOnly", "zhangsan", [silver], left=[d])  # its gold member left
    await group("wrFull", "zhangsan", [c])
    await group("wrNearlyFull", "zhangsan", [d])
    now = services.clock.now()
    for n in range(CAP):
        await earlier_row("wrFull", n, "sent", now - timedelta(minutes=5))
    for n in range(CAP - 1):  # all but one that count, two that never reached it, one
        await earlier_row("wrNearlyFull", n, "awaiting_staff" if n else "sent", now)
    for n in (CAP, CAP + 1):
        await earlier_row("wrNearlyFull", n, "failed", now)
    await earlier_row("wrNearlyFull", CAP + 2, "sent", now - timedelta(days=8))  # last week
    return {"a": a, "b": b, "c": c, "d": d, "silver": silver}


async def test_reach_counts_groups_with_reasons(services: Services) -> None:
    await _reach_world(services)
    bc_id = await broadcast(services)
    reach = (await service(services).preview(bc_id, gold())).as_dict()
    assert reach == {
        "channel": "wecom_group",
        "unit": "group",
        "total": 7,
        "reached": 3,
        "members": 5,  # a, b (in two groups), c, d and the silver member of wrReached1
        "excluded": {DISMISSED: 1, NO_OWNER: 2, LIMIT: 1},
    }


async def test_an_all_rule_reaches_every_group_of_an_active_owner(services: Services) -> None:
    await _reach_world(services)
    bc_id = await broadcast(services, rule={"all": []})
    reach = (await service(services).preview(bc_id)).as_dict()
    assert (reach["total"], reach["reached"]) == (9, 5)  # + wrSilverOnly, wrLeftOnly
    assert reach["excluded"] == {DISMISSED: 1, NO_OWNER: 2, LIMIT: 1}


async def test_enqueue_writes_one_row_per_group_and_skips_with_reasons(
    services: Services,
) -> None:
    await _reach_world(services)
    bc_id = await broadcast(services)
    bc = service(services, batch=2)  # pages of two groups
    await bc.start(bc_id, gold(), actor=ACTOR)
    rows = await OutboxMessage.filter(group_key=f"bc:{bc_id}").order_by("id")
    by_chat = {r.recipient: (r.status, r.reason, r.staff_userid, r.member_id) for r in rows}
    assert by_chat == {
        "wrReached1": ("pending", "", "zhangsan", None),
        "wrReached2": ("pending", "", "lisi", None),
        "wrNearlyFull": ("pending", "", "zhangsan", None),
        "wrInactiveOwner": ("skipped", NO_OWNER, "wangwu", None),
        "wrNoStaffRow": ("skipped", NO_OWNER, "ghost", None),
        "wrDismissed": ("skipped", DISMISSED, "zhangsan", None),
        "wrFull": ("skipped", LIMIT, "zhangsan", None),
    }
    text = next(r.payload["text"] for r in rows if r.status == "pending")
    assert text.endswith(services.renderer.opt_out_hint())
    assert {r.payload["text"] for r in rows if r.status == "pending"} == {text}
    # A process that died mid-enqueue continues: nothing is written twice.
    b = await Broadcast.get(id=bc_id)
    await repo.save_reach(bc_id, {**b.reach, "enqueued": False})
    await bc.continue_enqueue(bc_id, gold())
    assert await OutboxMessage.filter(group_key=f"bc:{bc_id}").count() == 7


async def test_one_task_per_owner_then_reconciled_per_chat_id(
    services: Services, fake: FakeServer
) -> None:
    a, b, c = [m for m, _ in await members(services, 3, wrote=None)]
    await staff("zhangsan", "lisi")
    for chat_id, owner, member_id in (
        ("wrZ1", "zhangsan", a),
        ("wrZ2", "zhangsan", b),
        ("wrZ3", "zhangsan", c),
        ("wrL1", "lisi", a),
        ("wrL2", "lisi", b),
    ):
        await group(chat_id, owner, [member_id], fake=fake)
    corp = fake.platform.corp()
    period, cap = receive_period(fake.platform.now(), RULE)
    corp.group_chats["wrZ3"].received[period] = cap  # sent to from elsewhere
    bc = service(services)
    bc_id = await broadcast(services)
    await bc.start(bc_id, gold(), actor=ACTOR)
    await sender(services).drain()
    tasks = [c.body for c in fake.platform.calls("wecom", TASK) if c.errcode == 0]
    assert sorted((t["sender"], t["chat_type"], sorted(t["chat_id_list"])) for t in tasks) == [
        ("lisi", "group", ["wrL1", "wrL2"]),
        ("zhangsan", "group", ["wrZ1", "wrZ2", "wrZ3"]),
    ]
    rows = await OutboxMessage.filter(group_key=f"bc:{bc_id}")
    assert Counter(r.status for r in rows) == {"awaiting_staff": 5}
    notices = {
        n.recipient: n.payload["text"] for n in await OutboxMessage.filter(channel="wecom_agent")
    }
    assert sorted(notices) == ["lisi", "zhangsan"]
    assert "共 2 个客户群" in notices["lisi"]
    assert "共 3 个客户群" in notices["zhangsan"]
    refs = {r.staff_userid: r.external_ref for r in rows}
    del corp.group_chats["wrZ2"]  # dismissed before zhangsan confirmed
    fake.platform.confirm_groupmsg(refs["zhangsan"], "zhangsan")
    assert await reconcile_awaiting(services.clients, services.clock.now()) == 3
    by_chat = {
        r.recipient: (r.status, r.reason)
        for r in await OutboxMessage.filter(group_key=f"bc:{bc_id}")
    }
    assert by_chat == {
        "wrZ1": ("sent", ""),
        "wrZ2": ("failed", RESULTS["wecom_group"][2][1]),
        "wrZ3": ("failed", RESULTS["wecom_group"][3][1]),
        "wrL1": ("awaiting_staff", ""),
        "wrL2": ("awaiting_staff", ""),
    }
    report = await bc.report(bc_id)
    assert report["staff"] == {
        "lisi": {"awaiting_staff": 2},
        "zhangsan": {"failed": 2, "sent": 1},
    }
    assert report["reach"]["unit"] == "group"
    assert report["channels"]["wecom_group"]["failed"]["count"] == 2
    fake.platform.confirm_groupmsg(refs["lisi"], "lisi")
    await reconcile_awaiting(services.clients, services.clock.now())
    assert (await bc.status(bc_id))["state"] == "done"
    report = await bc.report(bc_id)
    assert report["staff"]["lisi"] == {"sent": 2}
    assert len(fake.platform.calls("wecom", TASK)) == 2  # one call per owner, none repeated


async def test_an_owner_with_more_than_2000_groups_gets_tasks_of_at_most_2000(
    services: Services, fake: FakeServer
) -> None:
    await staff("zhangsan")
    now, corp = datetime(2026, 1, 1), fake.platform.corp()
    chat_ids = [f"wrMany{i:04d}" for i in range(2001)]
    await CustomerGroup.bulk_create(
        [CustomerGroup(chat_id=c, owner_userid="zhangsan", updated_at=now) for c in chat_ids]
    )
    for chat_id in chat_ids:
        corp.group_chats[chat_id] = GroupChat(chat_id, chat_id, "zhangsan", int(now.timestamp()))
    bc_id = await broadcast(services, rule={"all": []})
    await service(services, batch=1000).start(bc_id, actor=ACTOR)
    await sender(services).drain()
    sizes = [len(c.body["chat_id_list"]) for c in fake.platform.calls("wecom", TASK)]
    assert sorted(sizes) == [1, 2000]
    rows = await OutboxMessage.filter(group_key=f"bc:{bc_id}").values_list("status", flat=True)
    assert Counter(rows) == {"awaiting_staff": 2001}


async def test_the_fake_refuses_more_than_2000_chat_ids(
    services: Services, fake: FakeServer
) -> None:
    with pytest.raises(ApiError) as refused:
        await services.clients.wecom().group_msg.add_template(
            "zhangsan", [f"wr{i}" for i in range(2001)], "hi", "group"
        )
    assert refused.value.errcode == 40058
