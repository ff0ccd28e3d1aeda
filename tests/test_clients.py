"""Every API client method against the fake platform: success and its error codes."""

from __future__ import annotations

import pytest

from bot.clients.errors import ApiError
from bot.context import Services
from tests.conftest import OA_APPID, FakeServer


async def test_oa_user_info_has_the_unionid(services: Services) -> None:
    info = await services.clients.oa("brand").user.info("oUser1")
    assert (info["openid"], info["unionid"], info["subscribe"]) == ("oUser1", "uUnion1", 1)
    with pytest.raises(ApiError) as err:
        await services.clients.oa("brand").user.info("oNobody")
    assert err.value.errcode == 40003


async def test_oa_customer_service_text_news_image(services: Services, fake: FakeServer) -> None:
    fake.platform.interaction(appid=OA_APPID, openid="oUser1", kind="message")
    api = services.clients.oa("brand")
    await api.message.send_text("oUser1", "你好")
    await api.message.send_news("oUser1", "会员日", "双倍积分", "https://example.com/day")
    media = await api.media.upload("image", "qr.png", b"\x89PNG fake")
    await api.message.send_image("oUser1", media["media_id"])
    texts = [d.text for d in fake.platform.messages(openid="oUser1")]
    assert texts[0] == "你好"
    assert texts[1].startswith("[news] 会员日")
    assert texts[2].startswith("[image]")


async def test_oa_customer_service_outside_the_window_is_45015(services: Services) -> None:
    with pytest.raises(ApiError) as err:
        await services.clients.oa("brand").message.send_text("oUser2", "hi")
    assert err.value.errcode == 45015


async def test_oa_template_message(services: Services, fake: FakeServer) -> None:
    api = services.clients.oa("brand")
    result = await api.message.send_template("oUser1", "TPL1", {"points": {"value": "105"}})
    assert result["msgid"]
    assert fake.platform.messages(openid="oUser1")[-1].channel == "template"
    with pytest.raises(ApiError) as err:
        await services.clients.oa("compat").message.send_template("oUser1", "TPL1", {})
    assert err.value.errcode == 48001  # not a verified service account


async def test_oa_tags_and_mass_send(services: Services, fake: FakeServer) -> None:
    api = services.clients.oa("brand")
    tag = await api.tags.create("金卡会员")
    await api.tags.tag_users(tag["id"], ["oUser1", "oUser2"])
    assert tag["id"] in await api.tags.of_user("oUser1")
    assert any(t["name"] == "金卡会员" and t["count"] == 2 for t in await api.tags.list_tags())
    by_tag = await api.mass.send_text_to_tag(tag["id"], "会员日快乐", "bc-1")
    by_list = await api.mass.send_text_to_openids(["oUser1", "oUser3"], "周末活动", "bc-2")
    assert by_tag["msg_id"] != by_list["msg_id"]
    await api.tags.untag_users(tag["id"], ["oUser2"])
    assert tag["id"] not in await api.tags.of_user("oUser2")
    with pytest.raises(ApiError) as err:
        await api.mass.send_text_to_openids(["oUser1"], "x", "bc-3")
    assert err.value.errcode == 40130


async def test_oa_qrcode_and_menu(services: Services, fake: FakeServer) -> None:
    api = services.clients.oa("brand")
    temp = await api.qrcode.temporary("ref_ABC123", 3600)
    assert temp["expire_seconds"] == 3600
    perm = await api.qrcode.permanent("channel_store_01")
    assert "expire_seconds" not in perm
    assert api.qrcode.show_url(temp["ticket"]).startswith(f"{fake.url}/mp/cgi-bin/showqrcode?")
    await api.menu.create([{"type": "click", "name": "签到", "key": "SIGNIN"}])
    with pytest.raises(ApiError) as err:
        await api.menu.create([{"type": "click", "name": str(i), "key": str(i)} for i in range(4)])
    assert err.value.errcode == 40016


async def test_wecom_agent_message_and_contacts(services: Services, fake: FakeServer) -> None:
    wecom = services.clients.wecom()
    await wecom.message.send_text("zhangsan", "新客户提醒")
    assert fake.platform.messages(userid="zhangsan")[-1].text == "新客户提醒"
    contact = await wecom.external_contact.get("wmCust1")
    assert contact["external_contact"]["unionid"] == "uUnion1"
    assert contact["follow_user"][0]["tags"][0]["tag_id"] == "etFixtureVip"
    assert await wecom.external_contact.list_ids("zhangsan") == ["wmCust1", "wmCust2"]
    assert sorted(await wecom.external_contact.follow_users()) == ["lisi", "zhangsan"]
    with pytest.raises(ApiError) as err:
        await wecom.external_contact.get("wmNobody")
    assert err.value.errcode == 84061


async def test_wecom_batch_get_by_user_pages_with_the_cursor(services: Services) -> None:
    wecom = services.clients.wecom()
    seen, cursor = [], ""
    while True:
        page, cursor = await wecom.external_contact.batch_by_user(["zhangsan", "lisi"], cursor, 2)
        seen += [item["external_contact"]["external_userid"] for item in page]
        if not cursor:
            break
    assert sorted(seen) == ["wmCust1", "wmCust2", "wmCust2", "wmCust3"]  # one row per relation


async def test_wecom_corp_tags_and_mark_tag(services: Services, fake: FakeServer) -> None:
    tags = services.clients.wecom().tags
    groups = await tags.list_groups()
    assert {g["group_name"] for g in groups} == {"客户等级"}
    added = await tags.add("会员等级", [{"name": "金卡"}])
    new_tag = added["tag"][0]["id"]
    await tags.mark("zhangsan", "wmCust1", add=[new_tag], remove=["etFixtureVip"])
    follow = fake.platform.corp().customers["wmCust1"].follows["zhangsan"]
    assert follow.tags == [new_tag]
    with pytest.raises(ApiError) as err:
        await tags.mark("zhangsan", "wmCust1", add=["etNOPE"])
    assert err.value.errcode == 40068


async def test_wecom_welcome_message_once(services: Services, fake: FakeServer) -> None:
    code = fake.platform.mint_welcome_code("zhangsan", "wmCust1")
    contact = services.clients.wecom().external_contact
    await contact.send_welcome(code, "欢迎加入会员")
    with pytest.raises(ApiError) as err:
        await contact.send_welcome(code, "again")
    assert err.value.errcode == 41051


async def test_wecom_group_msg_task_and_result(services: Services, fake: FakeServer) -> None:
    group_msg = services.clients.wecom().group_msg
    fake.platform.corp().receive_rule = "day"  # the corp's 群发规则: one a customer a day
    task = await group_msg.add_template("zhangsan", ["wmCust1", "wmCust2", "wmCust3"], "新品")
    assert task["fail_list"] == ["wmCust3"]  # not zhangsan's customer
    rows, _ = await group_msg.send_result(task["msgid"], "zhangsan")
    assert {r["external_userid"]: r["status"] for r in rows} == {
        "wmCust1": 0,
        "wmCust2": 0,
        "wmCust3": 2,
    }
    fake.platform.confirm_groupmsg(task["msgid"], "zhangsan")
    rows, _ = await group_msg.send_result(task["msgid"], "zhangsan")
    assert [r["status"] for r in rows if r["external_userid"] == "wmCust1"] == [1]
    again = await group_msg.add_template("zhangsan", ["wmCust1"], "再来一条")
    assert again["fail_list"] == ["wmCust1"]  # one group message per customer per day


async def test_wecom_group_chats_contact_way_and_transfer(services: Services) -> None:
    wecom = services.clients.wecom()
    chats, cursor = await wecom.group_chat.list_chats()
    assert (chats, cursor) == ([{"chat_id": "wrFixtureGroup1", "status": 0}], "")
    chat = await wecom.group_chat.get("wrFixtureGroup1")
    assert chat["owner"] == "zhangsan"
    assert [m["userid"] for m in chat["member_list"]] == ["zhangsan", "wmCust1", "wmCust2"]
    way = await wecom.contact_way.add("store_01", ["zhangsan"])
    assert way["config_id"]
    moved = await wecom.transfer.transfer("zhangsan", "lisi", ["wmCust1", "wmCust3"])
    assert [m["errcode"] for m in moved] == [0, 84061]
    results, _ = await wecom.transfer.result("zhangsan", "lisi")
    assert [(r["external_userid"], r["status"]) for r in results] == [("wmCust1", 2)]  # 24 h
    resigned = await wecom.transfer.transfer("lisi", "zhangsan", ["wmCust3"], resigned=True)
    assert resigned == [{"external_userid": "wmCust3", "errcode": 0}]


async def test_mass_send_retry_with_the_same_clientmsgid_returns_the_first_job(
    services: Services, fake: FakeServer
) -> None:
    mass = services.clients.oa("brand").mass
    first = await mass.send_text_to_openids(["oUser1", "oUser2"], "周年庆", "bc-retry")
    again = await mass.send_text_to_openids(["oUser1", "oUser2"], "周年庆", "bc-retry")
    assert again == {"msg_id": first["msg_id"], "duplicate": True}
    assert len(fake.platform.messages(openid="oUser1")) == 1


async def test_staff_without_customers_have_an_empty_list(
    services: Services, fake: FakeServer
) -> None:
    from bot.devtools.fake.wecom_state import Staff

    contacts = services.clients.wecom().external_contact
    assert await contacts.list_ids("lisi") == ["wmCust2", "wmCust3"]
    fake.platform.corp().staff["wangwu"] = Staff("wangwu", "王五")
    assert await contacts.list_ids("wangwu") == []  # WeChat answers 84061 here
    with pytest.raises(ApiError) as err:
        await contacts.list_ids("nobody")
    assert err.value.errcode == 60111
