"""客户联系 events through the encrypted /wecom endpoint, against the fake platform."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.app import build_services
from bot.appkeys import SERVICES
from bot.config import ConfigError, Settings
from bot.context import Services
from bot.devtools import sim_events as ev
from storage.models import Identity, Member, Tag
from storage.models.wecom import CustomerTag, CustomerTransfer, StaffCustomer
from storage.repos import members as members_repo
from tests.conftest import OA_APPID, AppMaker, FakeServer, base_config, make_settings
from tests.fakes import FakeWall
from tests.helpers import post_wecom

WELCOME_API = "cgi-bin/externalcontact/send_welcome_msg"
GET_API = "cgi-bin/externalcontact/get"
STORE_TEXT = "欢迎光临门店"


@pytest.fixture
def wecom_settings(database: str, fake: FakeServer) -> Settings:
    """Test settings on the fake platform with the store_01 contact way."""
    raw = base_config(database)
    raw["wecom"]["contact_ways"] = {
        "store_01": {"welcome": "wecom_welcome_store", "channel": "store"}
    }
    raw["api"] = fake.api()
    return make_settings(raw)


def _services(client: Any) -> Services:
    services: Services = client.app[SERVICES]
    return services


def _corp(settings: Settings) -> str:
    assert settings.wecom is not None
    return settings.wecom.corp_id


async def _post(client: Any, settings: Settings, xml: str, at: int) -> None:
    resp = await post_wecom(client, settings, xml, timestamp=at)
    assert resp.status == 200
    assert await resp.text() == "success"


def _add_xml(
    settings: Settings, at: int, ext: str, code: str, *, state: str = "", half: bool = False
) -> str:
    change = "add_half_external_contact" if half else "add_external_contact"
    extra = (("State", state), ("WelcomeCode", code))
    return ev.wecom_contact_event(_corp(settings), change, "zhangsan", ext, at, *extra)


async def _add(
    client: Any,
    settings: Settings,
    fake: FakeServer,
    wall: FakeWall,
    ext: str,
    *,
    state: str = "",
    half: bool = False,
    code: str | None = None,
) -> str:
    """Post an add at a new second with a fresh WelcomeCode; returns the plaintext."""
    wall.advance(1)
    if code is None:
        code = fake.platform.mint_welcome_code("zhangsan", ext)
    xml = _add_xml(settings, int(wall.now), ext, code, state=state, half=half)
    await _post(client, settings, xml, int(wall.now))
    return xml


def _welcomes(fake: FakeServer, ext: str) -> list[str]:
    return [d.text for d in fake.platform.messages(external_userid=ext) if d.channel == "welcome"]


async def _relation(ext: str, staff: str = "zhangsan") -> StaffCustomer:
    return await StaffCustomer.get(staff_userid=staff, external_userid=ext)


async def _snapshot() -> list[tuple[Any, ...]]:
    rows = (
        await StaffCustomer.all()
        .order_by("id")
        .values_list(
            "id", "member_id", "status", "ended_by", "ended_at", "remark", "welcome", "updated_at"
        )
    )
    tags = await CustomerTag.all().order_by("id").values_list("id", "relation_id", "tag_id")
    members = await Member.all().order_by("id").values_list("id", "status")
    return [*rows, *tags, *members]


async def test_add_sends_the_states_welcome_once_and_records_the_relation(
    make_client: AppMaker, wall: FakeWall, fake: FakeServer, wecom_settings: Settings
) -> None:
    client = await make_client(wecom_settings)
    xml = await _add(client, wecom_settings, fake, wall, "wmNew1", state="store_01")
    await _services(client).background.idle()
    assert len(_welcomes(fake, "wmNew1")) == 1
    assert STORE_TEXT in _welcomes(fake, "wmNew1")[0]
    relation = await _relation("wmNew1")
    assert (relation.status, relation.welcome, relation.state) == ("active", "sent", "store_01")
    identity = await Identity.get(kind="wecom_external_userid", value="wmNew1")
    assert identity.app == _corp(wecom_settings)
    member = await Member.get(id=identity.member_id)  # type: ignore[attr-defined]
    assert relation.member_id == member.id  # type: ignore[attr-defined]
    assert member.channel == "store"
    # the welcome went out before any other API call
    calls = [c.api for c in fake.platform.calls("wecom") if c.api != "cgi-bin/gettoken"]
    assert calls[0] == WELCOME_API
    before = await _snapshot()
    await _post(client, wecom_settings, xml, int(wall.now))  # WeChat's retry
    await _services(client).background.idle()
    assert await _snapshot() == before
    assert len(fake.platform.calls("wecom", WELCOME_API)) == 1


async def test_unknown_state_gets_the_default_welcome_and_the_state_as_channel(
    make_client: AppMaker, wall: FakeWall, fake: FakeServer, wecom_settings: Settings
) -> None:
    client = await make_client(wecom_settings)
    await _add(client, wecom_settings, fake, wall, "wmNew2", state="poster_9")
    await _services(client).background.idle()
    [text] = _welcomes(fake, "wmNew2")
    assert STORE_TEXT not in text
    assert "专属顾问" in text
    identity = await Identity.get(kind="wecom_external_userid", value="wmNew2")
    assert (await Member.get(id=identity.member_id)).channel == "poster_9"  # type: ignore[attr-defined]


async def test_half_add_is_pending(
    make_client: AppMaker, wall: FakeWall, fake: FakeServer, wecom_settings: Settings
) -> None:
    client = await make_client(wecom_settings)
    await _add(client, wecom_settings, fake, wall, "wmHalf", half=True)
    await _services(client).background.idle()
    relation = await _relation("wmHalf")
    assert (relation.status, relation.welcome) == ("pending", "sent")


async def test_welcome_once_and_relation_recorded_while_the_fetch_is_slow(
    make_client: AppMaker, wall: FakeWall, fake: FakeServer, wecom_settings: Settings
) -> None:
    client = await make_client(wecom_settings)
    held = fake.platform.hold("wecom", GET_API)
    fake.platform.add_customer(
        "wmSlow", "慢客户", "", [{"userid": "zhangsan", "remark": "慢备注", "add_way": 1}]
    )
    await _add(client, wecom_settings, fake, wall, "wmSlow")
    background = _services(client).background
    assert background.running == 1  # answered while the platform holds externalcontact/get
    assert len(_welcomes(fake, "wmSlow")) == 1
    relation = await _relation("wmSlow")
    assert (relation.status, relation.remark) == ("active", "")
    held.release()
    await background.idle()
    relation = await _relation("wmSlow")
    assert relation.remark == "慢备注"
    member = await Member.get(id=relation.member_id)  # type: ignore[attr-defined]
    assert member.name == "慢客户"
    assert len(fake.platform.calls("wecom", WELCOME_API)) == 1


async def test_failed_fetch_keeps_the_welcome_and_the_relation(
    make_client: AppMaker, wall: FakeWall, fake: FakeServer, wecom_settings: Settings
) -> None:
    client = await make_client(wecom_settings)
    fake.platform.fail("wecom", GET_API, errcode=60111)
    await _add(client, wecom_settings, fake, wall, "wmFail")
    await _services(client).background.idle()
    assert len(fake.platform.calls("wecom", GET_API)) == 1
    assert len(_welcomes(fake, "wmFail")) == 1
    relation = await _relation("wmFail")
    assert (relation.status, relation.welcome) == ("active", "sent")
    assert await Identity.filter(kind="wecom_external_userid", value="wmFail").exists()


async def test_already_sent_41051_counts_as_sent(
    make_client: AppMaker, wall: FakeWall, fake: FakeServer, wecom_settings: Settings
) -> None:
    client = await make_client(wecom_settings)
    fake.platform.fail("wecom", WELCOME_API, errcode=41051)
    await _add(client, wecom_settings, fake, wall, "wm41051")
    await _services(client).background.idle()
    assert len(fake.platform.calls("wecom", WELCOME_API)) == 1
    assert (await _relation("wm41051")).welcome == "sent"


async def test_41096_is_retried_once_after_one_second(
    make_client: AppMaker, wall: FakeWall, fake: FakeServer, wecom_settings: Settings
) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    client = await make_client(wecom_settings, api_sleep=sleep)
    fake.platform.fail("wecom", WELCOME_API, errcode=41096)
    await _add(client, wecom_settings, fake, wall, "wm41096")
    await _services(client).background.idle()
    assert slept == [1.0]
    assert len(fake.platform.calls("wecom", WELCOME_API)) == 2
    assert len(_welcomes(fake, "wm41096")) == 1
    assert (await _relation("wm41096")).welcome == "sent"


async def test_41096_twice_records_failed(
    make_client: AppMaker, wall: FakeWall, fake: FakeServer, wecom_settings: Settings
) -> None:
    client = await make_client(wecom_settings)
    fake.platform.fail("wecom", WELCOME_API, errcode=41096, times=2)
    await _add(client, wecom_settings, fake, wall, "wmLate")
    await _services(client).background.idle()
    assert len(fake.platform.calls("wecom", WELCOME_API)) == 2
    assert (await _relation("wmLate")).welcome == "failed"


async def test_no_welcome_code_is_left_to_the_console(
    make_client: AppMaker, wall: FakeWall, fake: FakeServer, wecom_settings: Settings
) -> None:
    client = await make_client(wecom_settings)
    await _add(client, wecom_settings, fake, wall, "wmConsole", code="")
    await _services(client).background.idle()
    assert fake.platform.calls("wecom", WELCOME_API) == []
    assert (await _relation("wmConsole")).welcome == "by_console"


async def test_a_concurrent_delivery_does_not_send_twice(
    make_client: AppMaker, wall: FakeWall, fake: FakeServer, wecom_settings: Settings
) -> None:
    client = await make_client(wecom_settings)
    held = fake.platform.hold("wecom", WELCOME_API)
    code = fake.platform.mint_welcome_code("zhangsan", "wmTwice")
    at = int(wall.now) + 1
    # two deliveries of one add that intake cannot tell apart as a retry (new CreateTime)
    first = asyncio.create_task(
        _post(client, wecom_settings, _add_xml(wecom_settings, at, "wmTwice", code), at)
    )
    while not held.waiting:
        await asyncio.sleep(0)
    await _post(client, wecom_settings, _add_xml(wecom_settings, at + 1, "wmTwice", code), at + 1)
    held.release()
    await first
    await _services(client).background.idle()
    assert len(fake.platform.calls("wecom", WELCOME_API)) == 1
    assert len(_welcomes(fake, "wmTwice")) == 1
    assert await StaffCustomer.filter(external_userid="wmTwice").count() == 1
    assert (await _relation("wmTwice")).welcome == "sent"


async def test_unionid_links_to_the_oa_member(
    make_client: AppMaker, wall: FakeWall, fake: FakeServer, wecom_settings: Settings
) -> None:
    client = await make_client(wecom_settings)
    oa = await members_repo.create_with_identity(
        "oa_openid", OA_APPID, "oUser1", now=_services(client).clock.now()
    )
    await Identity.create(
        kind="unionid",
        app="",
        value="uUnion1",
        member_id=oa.id,
        created_at=_services(client).clock.now(),
    )
    await _add(client, wecom_settings, fake, wall, "wmCust1")  # the fixture customer: uUnion1
    await _services(client).background.idle()
    identity = await Identity.get(kind="wecom_external_userid", value="wmCust1")
    assert identity.member_id == oa.id  # type: ignore[attr-defined]
    assert (await _relation("wmCust1")).member_id == oa.id  # type: ignore[attr-defined]
    kinds = set(await Identity.filter(member_id=oa.id).values_list("kind", flat=True))
    assert kinds == {"oa_openid", "unionid", "wecom_external_userid"}
    assert await Member.filter(status="active").count() == 1


async def test_unionid_unknown_is_bound_to_the_new_member(
    make_client: AppMaker, wall: FakeWall, fake: FakeServer, wecom_settings: Settings
) -> None:
    client = await make_client(wecom_settings)
    await _add(client, wecom_settings, fake, wall, "wmCust2")
    await _services(client).background.idle()
    relation = await _relation("wmCust2")
    unionid = await Identity.get(kind="unionid", value="uUnion2")
    assert unionid.member_id == relation.member_id  # type: ignore[attr-defined]


async def test_edit_syncs_remark_and_tags_added_and_removed(
    make_client: AppMaker, wall: FakeWall, fake: FakeServer, wecom_settings: Settings
) -> None:
    client = await make_client(wecom_settings)
    await _add(client, wecom_settings, fake, wall, "wmCust2")  # fixture: zhangsan tagged 高意向
    await _services(client).background.idle()
    relation = await _relation("wmCust2")
    tags = CustomerTag.filter(relation_id=relation.id)
    assert await tags.values_list("tag__wecom_tag_id", flat=True) == ["etFixtureHot"]
    follow = {"userid": "zhangsan", "remark": "老客户", "tags": ["etFixtureVip", "etFixtureNew"]}
    fake.platform.add_customer("wmCust2", "李小红", "uUnion2", [follow])
    wall.advance(1)
    at = int(wall.now)
    xml = ev.wecom_contact_event(
        _corp(wecom_settings), "edit_external_contact", "zhangsan", "wmCust2", at
    )
    await _post(client, wecom_settings, xml, at)
    assert (await _relation("wmCust2")).remark == "老客户"
    wanted = {"etFixtureVip", "etFixtureNew"}
    assert set(await tags.values_list("tag__wecom_tag_id", flat=True)) == wanted
    vip = await Tag.get(wecom_tag_id="etFixtureVip").prefetch_related("group")
    assert (vip.name, vip.group.wecom_group_id) == ("VIP", "etFixtureGroup")
    before = await _snapshot()
    await _post(client, wecom_settings, xml, at)
    assert await _snapshot() == before


async def test_deletes_end_the_relation_keep_the_member_and_readd_reactivates(
    make_client: AppMaker, wall: FakeWall, fake: FakeServer, wecom_settings: Settings
) -> None:
    client = await make_client(wecom_settings)
    corp = _corp(wecom_settings)
    await _add(client, wecom_settings, fake, wall, "wmGone")
    await _services(client).background.idle()
    first = await _relation("wmGone")
    wall.advance(1)
    at = int(wall.now)
    xml = ev.wecom_contact_event(corp, "del_external_contact", "zhangsan", "wmGone", at)
    await _post(client, wecom_settings, xml, at)
    ended = await _relation("wmGone")
    assert (ended.status, ended.ended_by) == ("ended", "staff")
    assert ended.ended_at is not None
    assert await Member.filter(id=first.member_id, status="active").exists()  # type: ignore[attr-defined]
    before = await _snapshot()
    await _post(client, wecom_settings, xml, at)
    assert await _snapshot() == before
    await _add(client, wecom_settings, fake, wall, "wmGone")
    await _services(client).background.idle()
    again = await _relation("wmGone")
    assert (again.id, again.status, again.ended_by, again.ended_at) == (
        first.id,
        "active",
        "",
        None,
    )
    assert len(_welcomes(fake, "wmGone")) == 2  # a new add, a new WelcomeCode
    wall.advance(1)
    at = int(wall.now)
    xml = ev.wecom_contact_event(corp, "del_follow_user", "zhangsan", "wmGone", at)
    await _post(client, wecom_settings, xml, at)
    assert ((await _relation("wmGone")).ended_by) == "customer"


async def test_transfer_fail_is_recorded_on_the_relation_and_the_transfer(
    make_client: AppMaker, wall: FakeWall, fake: FakeServer, wecom_settings: Settings
) -> None:
    client = await make_client(wecom_settings)
    await _add(client, wecom_settings, fake, wall, "wmCust2")
    await _services(client).background.idle()
    now = _services(client).clock.now()
    transfer = await CustomerTransfer.create(
        handover_userid="zhangsan",
        takeover_userid="lisi",
        external_userid="wmCust2",
        created_at=now,
        updated_at=now,
    )
    other = await CustomerTransfer.create(
        handover_userid="zhangsan",
        takeover_userid="lisi",
        external_userid="wmCust1",
        created_at=now,
        updated_at=now,
    )
    wall.advance(1)
    at = int(wall.now)
    xml = ev.wecom_contact_event(
        _corp(wecom_settings),
        "transfer_fail",
        "lisi",
        "wmCust2",
        at,
        ("FailReason", "customer_refused"),
    )
    await _post(client, wecom_settings, xml, at)
    relation = await _relation("wmCust2")
    assert (relation.transfer_status, relation.transfer_note) == ("failed", "customer_refused")
    row = await CustomerTransfer.get(id=transfer.id)
    assert (row.status, row.reason) == ("failed", "customer_refused")
    assert (await CustomerTransfer.get(id=other.id)).status == "waiting"
    assert relation.status == "active"


def test_a_missing_welcome_template_is_a_config_error(database: str) -> None:
    raw = base_config(database)
    raw["wecom"]["contact_ways"] = {"store_02": {"welcome": "no_such_welcome"}}
    with pytest.raises(ConfigError, match=r"wecom\.contact_ways\.store_02\.welcome"):
        build_services(make_settings(raw))
    raw = base_config(database)
    raw["wecom"]["default_welcome"] = "missing_default"
    with pytest.raises(ConfigError, match=r"wecom\.default_welcome"):
        build_services(make_settings(raw))


async def test_simulator_add_customer_prints_the_store_welcome(
    database: str, aiohttp_server: Any
) -> None:
    import aiohttp

    from bot.app import Overrides, create_app
    from bot.devtools.simulator import Identity as SimIdentity
    from bot.devtools.simulator import Simulator
    from tests.fakes import ManualBudget
    from tests.test_simulator import _demo_settings, _free_port

    port = _free_port()
    demo = _demo_settings(database, port)
    assert demo.wecom is not None
    ways = {"store_01": {"welcome": "wecom_welcome_store", "channel": "store"}}
    settings = make_settings(
        demo.model_dump(mode="json"), wecom={**demo.wecom.model_dump(), "contact_ways": ways}
    )
    budget = ManualBudget()
    app = create_app(settings, Overrides(manage_db=False, budget=budget, run_sender=True))
    await aiohttp_server(app, port=port)
    lines: list[str] = []
    budget.fire()
    async with aiohttp.ClientSession() as session:
        sim = Simulator(
            settings,
            f"http://127.0.0.1:{port}",
            SimIdentity("brand", "", True, "zhangsan"),
            session,
            lines.append,
            late_wait=2,
            settle=2,
        )
        await sim.start()
        await sim.handle("/add-customer wmSimGuest --state store_01")
    text = "\n".join(lines)
    assert f"(欢迎语) < {STORE_TEXT}" in text
    relation = await _relation("wmSimGuest")
    assert (relation.welcome, relation.state) == ("sent", "store_01")


async def test_a_refused_merge_leaves_the_members_separate_with_a_log_line(
    make_client: AppMaker,
    wall: FakeWall,
    fake: FakeServer,
    wecom_settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await make_client(wecom_settings)
    now = _services(client).clock.now()
    oa = await members_repo.create_with_identity("oa_openid", OA_APPID, "oUser1", now=now)
    await Identity.create(kind="unionid", app="", value="uUnion1", member_id=oa.id, created_at=now)
    corp = _corp(wecom_settings)
    known = await members_repo.create_with_identity("wecom_external_userid", corp, "wmCust1", now)
    # both hold a different mobile number: the merge engine refuses
    await Member.filter(id=oa.id).update(mobile_hash="hash-a")
    await Member.filter(id=known.id).update(mobile_hash="hash-b")
    with caplog.at_level("INFO", logger="bot.wecom.customers"):
        await _add(client, wecom_settings, fake, wall, "wmCust1")
        await _services(client).background.idle()
    assert "merge refused" in caplog.text
    assert (await _relation("wmCust1")).member_id == known.id  # type: ignore[attr-defined]
    assert await Member.filter(id__in=[oa.id, known.id], status="active").count() == 2
    assert len(_welcomes(fake, "wmCust1")) == 1
