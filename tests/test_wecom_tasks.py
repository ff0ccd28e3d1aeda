"""WeCom group tasks: notices through staff, one add_msg_template per staff member."""

from __future__ import annotations

import asyncio
import contextlib
import tomllib
from datetime import timedelta
from typing import Any

from bot.context import Services
from bot.outbox.sender import LEASE
from bot.outbox.wecom_tasks import FAILED_AT_CREATION, reconcile_awaiting
from bot.templating import TEMPLATES_DIR
from storage.models import OutboxMessage, StaffCustomer
from storage.repos import members as members_repo
from storage.repos import outbox
from tests.conftest import WECOM_CORP_ID, FakeServer
from tests.fakes import FakeWall
from tests.outbound_support import drain_until_settled, sender

TASK_API = "cgi-bin/externalcontact/add_msg_template"
VARS: dict[str, Any] = tomllib.loads((TEMPLATES_DIR / "samples.toml").read_text("utf-8"))[
    "points_changed"
]


async def customer(services: Services, fake: FakeServer, ext: str, staff: str) -> int:
    """A member known only as the WeCom customer ``ext`` of ``staff`` (here and on the fake)."""
    fake.platform.add_customer(ext, ext, follow_user=[{"userid": staff}])
    now = services.clock.now()
    member = await members_repo.create_with_identity(
        "wecom_external_userid", WECOM_CORP_ID, ext, now=now
    )
    await StaffCustomer.create(
        corp=WECOM_CORP_ID,
        staff_userid=staff,
        external_userid=ext,
        member_id=member.id,
        created_at=now,
        updated_at=now,
    )
    return member.id


async def notify_all(services: Services, members: list[int], group: str | None) -> list[str]:
    """One points notice per member; the channels chosen."""
    channels = []
    for i, member_id in enumerate(members):
        outcome = await services.notify.notify(
            member_id, "points_changed", VARS, key=f"n{i}:{group}", group_key=group
        )
        channels.append(outcome.channel)
    return channels


async def ended(group: str) -> dict[str, tuple[str, str]]:
    """recipient → (status, reason) of a group's rows."""
    rows = await OutboxMessage.filter(group_key=group)
    return {r.recipient: (r.status, r.reason) for r in rows}


async def wecom_rows(field: str) -> list[Any]:
    """One field of every wecom_customer row."""
    return list(await OutboxMessage.filter(channel="wecom_customer").values_list(field, flat=True))


def task_calls(fake: FakeServer) -> list[dict[str, Any]]:
    """The bodies of the add_msg_template calls the fake accepted."""
    return [c.body for c in fake.platform.calls("wecom", TASK_API) if c.errcode == 0]


async def test_one_task_per_staff_member_then_reconciled_from_the_send_result(
    services: Services, fake: FakeServer
) -> None:
    members = [
        await customer(services, fake, "wmA1", "zhangsan"),
        await customer(services, fake, "wmA2", "zhangsan"),
        await customer(services, fake, "wmB1", "lisi"),
    ]
    assert await notify_all(services, members, "sop:points:1") == ["wecom_customer"] * 3
    send = sender(services)
    await send.drain()
    assert task_calls(fake) == []  # held until the occurrence is complete
    assert await outbox.release_group("sop:points:1") == 3
    await send.drain()
    calls = sorted(task_calls(fake), key=lambda b: str(b["sender"]))
    assert [(b["sender"], sorted(b["external_userid"])) for b in calls] == [
        ("lisi", ["wmB1"]),
        ("zhangsan", ["wmA1", "wmA2"]),
    ]
    rows = await OutboxMessage.filter(channel="wecom_customer")
    assert {r.status for r in rows} == {"awaiting_staff"}
    msgids = {r.staff_userid: r.external_ref for r in rows}
    agent = [m for m in fake.platform.messages(userid="zhangsan") if m.channel == "agent"]
    assert len(agent) == 1
    assert "2 位客户" in agent[0].text
    assert "确认发送" in agent[0].text
    assert [m.channel for m in fake.platform.messages(userid="lisi")].count("agent") == 1

    assert await reconcile_awaiting(services.clients, services.clock.now()) == 0  # not yet
    fake.platform.confirm_groupmsg(msgids["zhangsan"], "zhangsan")
    fake.platform.corp().customers["wmB1"].follows.pop("lisi")  # deleted before confirming
    fake.platform.confirm_groupmsg(msgids["lisi"], "lisi")
    assert await reconcile_awaiting(services.clients, services.clock.now()) == 3
    ended = {
        r.recipient: (r.status, r.reason)
        for r in await OutboxMessage.filter(group_key="sop:points:1")
    }
    assert ended["wmA1"] == ("sent", "")
    assert ended["wmA2"] == ("sent", "")
    assert ended["wmB1"][0] == "failed"
    assert "not a friend" in ended["wmB1"][1]


async def test_a_notice_without_a_group_is_its_own_task_at_once(
    services: Services, fake: FakeServer
) -> None:
    member = await customer(services, fake, "wmSolo", "zhangsan")
    assert await notify_all(services, [member], None) == ["wecom_customer"]
    row = await OutboxMessage.get(channel="wecom_customer")
    assert (row.status, row.group_key, row.staff_userid) == (
        "pending",
        row.idempotency_key,
        "zhangsan",
    )
    assert row.account == services.settings.wecom.name if services.settings.wecom else False
    await sender(services).drain()
    assert [b["external_userid"] for b in task_calls(fake)] == [["wmSolo"]]


async def test_more_customers_than_a_task_holds_make_several_tasks(
    services: Services, fake: FakeServer
) -> None:
    members = [await customer(services, fake, f"wmMany{i}", "zhangsan") for i in range(5)]
    await notify_all(services, members, "sop:many")
    await outbox.release_group("sop:many")
    await sender(services, wecom_task_max=2).drain()
    sizes = sorted(len(b["external_userid"]) for b in task_calls(fake))
    assert sizes == [1, 2, 2]
    assert await OutboxMessage.filter(status="awaiting_staff").count() == 5
    refs = await OutboxMessage.filter(channel="wecom_customer").values_list(
        "external_ref", flat=True
    )
    assert len(set(refs)) == 3


async def test_rate_codes_put_the_task_back_and_refused_customers_fail(
    services: Services, fake: FakeServer, wall: FakeWall
) -> None:
    members = [await customer(services, fake, f"wmR{i}", "zhangsan") for i in range(3)]
    corp = fake.platform.corp()
    corp.receive_rule = "day"  # the corp's 群发规则: one group message a customer a day
    corp.customers["wmR2"].received["2023-11-15"] = 1  # capped today
    await notify_all(services, members, "sop:rate")
    await outbox.release_group("sop:rate")
    fake.platform.fail(platform="wecom", api=TASK_API, errcode=45033, times=2)
    send = sender(services)
    await send.drain()
    reasons = set(
        await OutboxMessage.filter(channel="wecom_customer").values_list("reason", flat=True)
    )
    assert reasons == {"rate: 45033"}
    assert [m for m in fake.platform.messages(userid="zhangsan") if m.channel == "agent"] == []
    await drain_until_settled(send, wall)
    assert len(task_calls(fake)) == 1
    ended = {
        r.recipient: (r.status, r.reason) for r in await OutboxMessage.filter(group_key="sop:rate")
    }
    assert ended["wmR0"][0] == ended["wmR1"][0] == "awaiting_staff"
    assert ended["wmR2"] == ("failed", FAILED_AT_CREATION)
    agent = [m for m in fake.platform.messages(userid="zhangsan") if m.channel == "agent"]
    assert len(agent) == 1
    assert "2 位客户" in agent[0].text


async def test_an_unknown_outcome_leaves_every_row_of_the_task_unknown(
    services: Services, fake: FakeServer, wall: FakeWall
) -> None:
    members = [await customer(services, fake, f"wmU{i}", "lisi") for i in range(2)]
    await notify_all(services, members, "sop:unknown")
    await outbox.release_group("sop:unknown")
    hold = fake.platform.hold("wecom", TASK_API)
    task = asyncio.create_task(sender(services).drain())
    for _ in range(100_000):
        if hold.waiting:
            break
        await asyncio.sleep(0)
    assert hold.waiting == 1
    task.cancel()  # the sender dies during the call
    hold.release()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    wall.advance((LEASE + timedelta(seconds=1)).total_seconds())
    await sender(services).drain()
    assert await wecom_rows("status") == ["unknown", "unknown"]
    assert len(fake.platform.calls("wecom", TASK_API)) == 1


async def test_a_personal_sop_text_goes_as_one_task_through_its_wecom_variant(
    services: Services, fake: FakeServer
) -> None:
    members = [
        await customer(services, fake, "wmV1", "zhangsan"),
        await customer(services, fake, "wmV2", "zhangsan"),
    ]
    variables = [
        {**common, "code": f"CODE{i}", "points": 100 * i, "streak": i, "next_day": i + 1}
        for i, common in enumerate([_SOP_COMMON, _SOP_COMMON], start=1)
    ]
    for i, (member_id, values) in enumerate(zip(members, variables, strict=True)):
        outcome = await services.notify.notify(
            member_id, "sop_signin_streak", values, key=f"streak{i}", kind="marketing",
            group_key="sop:signin_streak:9",
        )  # fmt: skip
        assert outcome.channel == "wecom_customer"
    await outbox.release_group("sop:signin_streak:9")
    await sender(services).drain()
    (call,) = task_calls(fake)  # two personal notices, one text: one task
    assert sorted(call["external_userid"]) == ["wmV1", "wmV2"]
    assert "CODE" not in call["text"]["content"]
    assert "退订" in call["text"]["content"]  # marketing: the opt-out hint


_SOP_COMMON: dict[str, Any] = tomllib.loads((TEMPLATES_DIR / "samples.toml").read_text("utf-8"))[
    "sop_signin_streak"
]
