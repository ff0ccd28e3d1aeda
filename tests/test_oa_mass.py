"""OA mass send from the outbox: one message/mass/send per group of ≤ mass_max rows."""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp import ClientSession

from bot.app import Overrides, build_services
from bot.clock import BusinessClock
from bot.context import Services
from bot.outbox.sender import Sender
from storage.models import Broadcast, Identity, MassJob, OutboxMessage
from storage.repos import outbox
from tests.conftest import OA_APPID, AppMaker, FakeServer, base_config, make_settings
from tests.fakes import FakeWall
from tests.helpers import post_oa
from tests.outbound_support import drain_until_settled, sender, statuses

MASS = "cgi-bin/message/mass/send"


async def broadcast(services: Services) -> int:
    """A broadcast row for the jobs to belong to."""
    now = services.clock.now()
    made = await Broadcast.create(
        name="sale", channel="oa_mass", account="brand", created_at=now, updated_at=now
    )
    return int(made.id)


async def mass_rows(services: Services, fake: FakeServer, count: int, content: Any = None) -> int:
    """``count`` oa_mass rows of one new broadcast to followers of the account; its id."""
    bid = await broadcast(services)
    for i in range(count):
        openid = f"oMass{bid}x{i}"
        fake.platform.add_user(OA_APPID, openid)
        payload = content or {"text": "双十一"}
        message = outbox.NewMessage(
            f"bc:{bid}:{openid}",
            "oa_mass",
            "brand",
            openid,
            payload,
            "broadcast",
            group_key=f"bc:{bid}",
        )
        await outbox.enqueue(message, services.clock.now())
    return bid


def mass_calls(fake: FakeServer) -> list[dict[str, Any]]:
    """Bodies of every mass/send call the fake received (any answer)."""
    return [c.body for c in fake.platform.calls("oa", MASS)]


async def test_rows_of_a_broadcast_go_out_in_calls_of_at_most_mass_max(
    services: Services, fake: FakeServer
) -> None:
    bid = await mass_rows(services, fake, 25)
    await sender(services, mass_max=10).drain()
    calls = mass_calls(fake)
    assert sorted(len(b["touser"]) for b in calls) == [5, 10, 10]
    assert len({b["clientmsgid"] for b in calls}) == 3
    recipients = await OutboxMessage.all().values_list("recipient", flat=True)
    assert Counter(o for b in calls for o in b["touser"]) == dict.fromkeys(recipients, 1)
    rows = await OutboxMessage.filter(group_key=f"bc:{bid}")
    assert {r.status for r in rows} == {"submitted"}
    jobs = await MassJob.filter(broadcast_id=bid).order_by("id")
    assert [j.clientmsgid for j in jobs] == [b["clientmsgid"] for b in calls]
    assert {j.status for j in jobs} == {"submitted"}
    assert sorted(j.recipients for j in jobs) == [5, 10, 10]
    by_job = Counter(r.external_ref for r in rows)
    assert by_job == {j.msg_id: j.recipients for j in jobs}
    assert len(fake.platform.messages(openid=rows[0].recipient)) == 1


async def test_an_mpnews_broadcast_and_a_lone_recipient(
    services: Services, fake: FakeServer
) -> None:
    await mass_rows(services, fake, 1, {"mpnews": {"media_id": "MEDIA1"}})
    await sender(services).drain()
    (body,) = mass_calls(fake)
    assert body["msgtype"] == "mpnews"
    assert body["mpnews"] == {"media_id": "MEDIA1"}
    assert len(set(body["touser"])) == 1  # the API needs two openids: the one repeated
    assert await statuses() == {"submitted": 1}


async def test_a_timeout_is_retried_as_the_same_job(
    fake: FakeServer, database: str, wall: FakeWall
) -> None:
    settings = make_settings(base_config(database), api={**fake.api(), "timeout_seconds": 0.05})
    clock = BusinessClock(settings.tz, allow_offset=True, source=wall.time)
    services = build_services(settings, Overrides(wall=wall, clock=clock, api_sleep=_none))
    await services.clients.start()
    try:
        bid = await mass_rows(services, fake, 4)
        fake.platform.fail(platform="oa", api=MASS, delay=0.2, times=1)
        send = Sender(services.clients, services.clock)
        await send.drain()
        rows = await OutboxMessage.filter(group_key=f"bc:{bid}")
        assert {(r.status, r.reason[:6]) for r in rows} == {("pending", "retry:")}
        # The platform did create the job; only its answer was lost (the fake dropped the
        # timed-out request, so the test delivers that same request once more).
        lost = fake.platform.calls("oa", MASS)[0].body
        mass = services.clients.oa("brand").mass
        await mass.send_to_openids(lost["touser"], "text", lost["text"], lost["clientmsgid"])
        await drain_until_settled(send, wall)
    finally:
        await services.clients.close()
    calls = fake.platform.calls("oa", MASS)
    assert calls[-1].errcode == 45065  # the retry names the first job: no second job
    assert {c.body["clientmsgid"] for c in calls} == {lost["clientmsgid"]}
    assert len(fake.platform.world.mass_jobs) == 1
    (job,) = await MassJob.filter(broadcast_id=bid)
    (platform_job,) = fake.platform.world.mass_jobs.values()
    assert (job.status, job.msg_id) == ("submitted", str(platform_job.msg_id))
    assert await statuses() == {"submitted": 4}
    assert len(fake.platform.messages(openid=f"oMass{bid}x0")) == 1


async def test_a_rate_code_puts_the_rows_back_then_they_are_submitted(
    services: Services, fake: FakeServer, wall: FakeWall
) -> None:
    bid = await mass_rows(services, fake, 3)
    fake.platform.fail(platform="oa", api=MASS, errcode=45011, times=1)
    send = sender(services)
    await send.drain()
    reasons = await OutboxMessage.filter(status="pending").values_list("reason", flat=True)
    assert reasons == ["rate: 45011"] * 3
    assert (await MassJob.get(broadcast_id=bid)).status == "pending"
    await drain_until_settled(send, wall)
    assert await statuses() == {"submitted": 3}
    assert [c.errcode for c in fake.platform.calls("oa", MASS)] == [45011, 0]
    assert await MassJob.filter(broadcast_id=bid).count() == 1


async def test_rows_outside_a_broadcast_group_fail(services: Services, fake: FakeServer) -> None:
    fake.platform.add_user(OA_APPID, "oLost")
    message = outbox.NewMessage("lost", "oa_mass", "brand", "oLost", {"text": "x"}, "t")
    await outbox.enqueue(message, services.clock.now())
    await sender(services).drain()
    row = await OutboxMessage.get(idempotency_key="lost")
    assert row.status == "failed"
    assert "bc:<id>" in row.reason
    assert mass_calls(fake) == []


async def test_masssendjobfinish_stores_the_totals_once(
    services: Services, fake: FakeServer, make_client: AppMaker, wall: FakeWall
) -> None:
    bid = await mass_rows(services, fake, 3)
    fake.platform.world.accounts[OA_APPID].users[f"oMass{bid}x2"].subscribe = 0
    await sender(services).drain()
    job = await MassJob.get(broadcast_id=bid)
    app_settings = make_settings(base_config(services.settings.database.url))
    client = await make_client(app_settings)
    first = None
    for _ in range(2):  # a second report (a later CreateTime: not a duplicate delivery)
        xml = await finish_xml(fake, job.msg_id)
        resp = await post_oa(client, app_settings, xml, timestamp=int(wall.now))
        assert (resp.status, await resp.text()) == (200, "success")
        await job.refresh_from_db()
        assert (job.status, job.total_count, job.filter_count) == ("send success", 3, 2)
        assert (job.sent_count, job.error_count) == (2, 0)
        first = first or job.finished_at
        assert job.finished_at == first is not None  # stored once
        wall.advance(10)
    unknown = xml.replace(f"<MsgID>{job.msg_id}</MsgID>", "<MsgID>999</MsgID>")
    resp = await post_oa(client, app_settings, unknown, timestamp=int(wall.now))
    assert (resp.status, await resp.text()) == (200, "success")
    assert await MassJob.filter(finished_at=None).count() == 0
    assert not await Identity.filter(value="mphelper").exists()  # the assistant: no member


async def finish_xml(fake: FakeServer, msg_id: str) -> str:
    """The fake's MASSSENDJOBFINISH event for a job, through its control API."""
    async with ClientSession() as http:
        answer = await http.post(f"{fake.url}/_control/mass/finish", json={"msg_id": int(msg_id)})
        return str((await answer.json())["xml"])


async def _none(seconds: float) -> None:
    return None
